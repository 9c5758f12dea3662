package mimeview

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	mtextproto "github.com/emersion/go-message/textproto"
	"golang.org/x/text/encoding/charmap"
)

const (
	maxErrors    = 32
	maxErrorLen  = 200
	maxBoundary  = 200
	maxAddresses = 100
	maxWords     = 200
)

type parser struct {
	ctx       context.Context
	lim       Limits
	v         *View
	src       *source
	lr        *lineReader
	bounds    [][]byte
	stopped   bool
	textBytes int
	urlSeen   map[string]bool
	limitSeen map[string]bool
	ownHTML   bool // a text/html part outside attached messages
	ownPlain  bool // a non-empty text/plain part outside attached messages
}

func newParser(ctx context.Context, r io.Reader, lim Limits) *parser {
	src := &source{ctx: ctx, r: r, max: lim.MaxBytes}
	return &parser{
		ctx:       ctx,
		lim:       lim,
		v:         &View{},
		src:       src,
		lr:        newLineReader(src),
		urlSeen:   make(map[string]bool),
		limitSeen: make(map[string]bool),
	}
}

// run parses the message and fills the view; a panic of a dependency on
// hostile input is contained and reported as an error of the view.
func (p *parser) run() {
	defer func() {
		if r := recover(); r != nil {
			p.errorf("parser panic: %v", r)
			p.limit(LimitTime)
		}
		p.v.Bytes = p.src.n
		if p.src.over {
			p.limit(LimitBytes)
		}
		if p.src.timedOut || p.ctx.Err() != nil {
			p.limit(LimitTime)
		}
		p.v.HTMLOnly = p.ownHTML && !p.ownPlain
	}()
	p.entity(0, false, true, "text/plain")
}

func (p *parser) limit(name string) {
	p.v.Truncated = true
	if !p.limitSeen[name] {
		p.limitSeen[name] = true
		p.v.Limits = append(p.v.Limits, name)
	}
}

func (p *parser) errorf(format string, args ...any) {
	if len(p.v.Errors) >= maxErrors {
		return
	}
	s := strings.ToValidUTF8(fmt.Sprintf(format, args...), "?")
	if len(s) > maxErrorLen {
		s = cutUTF8(s, maxErrorLen) + "..."
	}
	p.v.Errors = append(p.v.Errors, s)
}

// halt reports whether parsing must stop: the part limit was reached or
// the time is up.
func (p *parser) halt() bool {
	if p.stopped {
		return true
	}
	if p.ctx.Err() != nil {
		p.limit(LimitTime)
		p.stopped = true
	}
	return p.stopped
}

func (p *parser) body() *bodyReader {
	return &bodyReader{lr: p.lr, bounds: p.bounds}
}

// entity parses one entity, header and body, and returns how its body
// ended. top is the message itself; embedded, an entity inside an
// attached message.
func (p *parser) entity(depth int, embedded, top bool, defaultType string) end {
	if p.halt() {
		return endOfInput
	}
	if p.v.Parts >= p.lim.MaxParts {
		p.limit(LimitParts)
		p.stopped = true
		return endOfInput
	}
	p.v.Parts++
	if depth > p.v.MaxDepth {
		p.v.MaxDepth = depth
	}
	h, ended := p.readHeader(top)
	if top {
		p.topHeader(h)
	}
	if ended != nil {
		return *ended
	}
	mt, params := mediaType(h.Get("Content-Type"), defaultType)
	disp, dparams := disposition(h.Get("Content-Disposition"))
	name := fileName(dparams, params)
	cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))

	switch {
	case strings.HasPrefix(mt, "multipart/"):
		boundary := params["boundary"]
		if boundary == "" || len(boundary) > maxBoundary {
			p.errorf("%s without a usable boundary", mt)
			return p.body().drain()
		}
		if depth >= p.lim.MaxDepth {
			p.limit(LimitDepth)
			return p.body().drain()
		}
		child := "text/plain"
		if mt == "multipart/digest" {
			child = "message/rfc822"
		}
		return p.multipart(depth, embedded, []byte(boundary), child)
	case mt == "message/rfc822" || mt == "message/global":
		if name != "" || disp == "attachment" {
			p.addAttachment(Attachment{Name: name, Type: mt, Disposition: disp, Embedded: embedded})
		}
		if depth >= p.lim.MaxDepth {
			p.limit(LimitDepth)
			return p.body().drain()
		}
		if cte == "base64" || cte == "quoted-printable" {
			return p.encodedMessage(depth, cte)
		}
		return p.entity(depth+1, true, false, "text/plain")
	case (mt == "text/plain" || mt == "text/html") && disp != "attachment":
		br := p.body()
		p.text(br, mt, params["charset"], cte, embedded)
		if name != "" {
			p.addAttachment(Attachment{Name: name, Type: mt, Disposition: disp, Embedded: embedded})
		}
		return br.drain()
	default:
		br := p.body()
		p.attachment(br, Attachment{Name: name, Type: mt, Disposition: disp, Embedded: embedded}, cte)
		return br.drain()
	}
}

// multipart reads the body of a multipart entity: the preamble, each part,
// and the epilogue; it returns at the end of the input or at a boundary
// of an enclosing multipart.
func (p *parser) multipart(depth int, embedded bool, boundary []byte, childType string) end {
	mine := len(p.bounds)
	p.bounds = append(p.bounds, boundary)
	defer func() { p.bounds = p.bounds[:mine] }()
	e := p.body().drain() // preamble
	for {
		switch {
		case e.idx < 0:
			return e
		case e.idx < mine:
			return e // an enclosing boundary: this multipart was not closed
		case e.final:
			p.bounds = p.bounds[:mine]
			return p.body().drain() // epilogue
		}
		if p.halt() {
			return endOfInput
		}
		e = p.entity(depth+1, embedded, false, childType)
	}
}

// encodedMessage parses an attached message sent with a transfer
// encoding: decoded (up to MaxPartBytes) then parsed on its own.
func (p *parser) encodedMessage(depth int, cte string) end {
	br := p.body()
	data, truncated := readCapped(decoder(br, cte), p.lim.MaxPartBytes)
	if truncated {
		p.limit(LimitPartBytes)
	}
	e := br.drain()
	saveLR, saveBounds := p.lr, p.bounds
	p.lr, p.bounds = newLineReader(bytes.NewReader(data)), nil
	p.entity(depth+1, true, false, "text/plain")
	p.lr, p.bounds = saveLR, saveBounds
	return e
}

// readHeader reads a header section. It returns the end of the entity
// when the section ends at a boundary line or at the end of the input.
// A line that is neither a field nor a continuation ends the section and
// is left for the body (the top-level mbox "From " line is skipped).
func (p *parser) readHeader(top bool) (mtextproto.Header, *end) {
	var raw bytes.Buffer
	fields, size := 0, 0
	keep := false // the current field is kept
	first := true
	var ended *end
	over := false
	for {
		chunk, start, err := p.lr.next()
		if err != nil {
			ended = &endOfInput
			break
		}
		if !start {
			// the rest of a long line
			if keep && size+len(chunk) <= p.lim.MaxHeaderBytes {
				raw.Write(trimEOL(chunk))
				size += len(chunk)
			} else if keep {
				keep, over = false, true
			}
			continue
		}
		if e, ok := boundaryOf(p.bounds, chunk); ok {
			ended = &e
			break
		}
		line := trimEOL(chunk)
		if len(line) == 0 {
			break
		}
		isFirst := first
		first = false
		if line[0] == ' ' || line[0] == '\t' {
			if keep && size+len(chunk) <= p.lim.MaxHeaderBytes {
				raw.WriteString("\r\n")
				raw.Write(line)
				size += len(chunk)
			} else if keep {
				keep, over = false, true
			}
			continue
		}
		colon := bytes.IndexByte(line, ':')
		key := bytes.TrimRight(line[:max(colon, 0)], " \t")
		if colon <= 0 || len(key) == 0 || !validKey(key) {
			if top && isFirst && bytes.HasPrefix(line, []byte("From ")) {
				continue
			}
			p.errorf("header ended by a line that is not a field: %.60q", line)
			p.lr.unread(chunk, true)
			break
		}
		if fields >= p.lim.MaxFields || size+len(chunk) > p.lim.MaxHeaderBytes {
			keep, over = false, true
			continue
		}
		if fields > 0 {
			raw.WriteString("\r\n")
		}
		raw.Write(key)
		raw.WriteByte(':')
		raw.Write(line[colon+1:])
		fields++
		size += len(chunk)
		keep = true
	}
	if over {
		p.limit(LimitHeader)
	}
	if fields > 0 {
		raw.WriteString("\r\n\r\n")
	}
	h, err := mtextproto.ReadHeader(bufio.NewReader(&raw))
	if err != nil {
		p.errorf("header: %v", err)
	}
	return h, ended
}

func validKey(k []byte) bool {
	for _, c := range k {
		if c < '!' || c > '~' || c == ':' {
			return false
		}
	}
	return true
}

// topHeader fills the view's decoded header fields.
func (p *parser) topHeader(h mtextproto.Header) {
	v := p.v
	v.Header = h
	v.Subject = p.decodeField("Subject", h.Get("Subject"))
	v.From = p.addresses("From", h.Get("From"))
	v.ReplyTo = p.addresses("Reply-To", h.Get("Reply-To"))
	v.To = p.addresses("To", h.Get("To"))
	v.Cc = p.addresses("Cc", h.Get("Cc"))
}

// mediaType parses a Content-Type value leniently: the lower-cased type
// (def when absent or unusable) and its parameters.
func mediaType(v, def string) (string, map[string]string) {
	if strings.TrimSpace(v) == "" {
		return def, map[string]string{}
	}
	mt, params := parseParams(v)
	if !strings.Contains(mt, "/") {
		return def, params
	}
	return mt, params
}

func disposition(v string) (string, map[string]string) {
	if strings.TrimSpace(v) == "" {
		return "", map[string]string{}
	}
	return parseParams(v)
}

// parseParams parses "value; k=v; ..." with mime.ParseMediaType (RFC 2231
// continuations and charsets), falling back to a lenient split for
// malformed values.
func parseParams(v string) (string, map[string]string) {
	mt, params, err := mime.ParseMediaType(v)
	if err == nil {
		return strings.ToLower(mt), params
	}
	head, rest, _ := strings.Cut(v, ";")
	mt = strings.ToLower(strings.TrimSpace(head))
	if i := strings.IndexAny(mt, " \t\"("); i >= 0 {
		mt = mt[:i]
	}
	params = map[string]string{}
	for _, kv := range strings.Split(rest, ";") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' {
			if j := strings.IndexByte(val[1:], '"'); j >= 0 {
				val = val[1 : j+1]
			} else {
				val = val[1:]
			}
		}
		if k != "" && len(params) < 32 {
			if _, dup := params[k]; !dup {
				params[k] = val
			}
		}
	}
	return mt, params
}

// fileName is the part's file name: Content-Disposition's filename, else
// Content-Type's name; encoded-words in it decoded (RFC 2231 is decoded by
// mime.ParseMediaType).
func fileName(dparams, params map[string]string) string {
	n := dparams["filename"]
	if n == "" {
		n = params["name"]
	}
	if n == "" {
		return ""
	}
	n, _ = decodeWords(n, nil, "")
	n = strings.TrimSpace(n)
	if len(n) > 512 {
		n = cutUTF8(n, 512)
	}
	return n
}

// decoder undoes the transfer encoding.
func decoder(r io.Reader, cte string) io.Reader {
	switch cte {
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, &base64Filter{r: r})
	case "quoted-printable":
		return quotedprintable.NewReader(r)
	}
	return r
}

// base64Filter passes only the base64 alphabet, so line ends, spaces and
// junk between the lines do not stop the decoder.
type base64Filter struct{ r io.Reader }

func (f *base64Filter) Read(p []byte) (int, error) {
	for {
		n, err := f.r.Read(p)
		j := 0
		for _, c := range p[:n] {
			if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

// readCapped reads r up to max bytes, and reports whether there was more.
// A read error ends the data silently: what was decoded is kept.
func readCapped(r io.Reader, max int) ([]byte, bool) {
	var buf bytes.Buffer
	n, _ := io.Copy(&buf, io.LimitReader(r, int64(max)+1))
	if n > int64(max) {
		return buf.Bytes()[:max], true
	}
	return buf.Bytes(), false
}

// toUTF8 converts a text part's bytes from its charset; without a usable
// charset, bytes that are not UTF-8 are read as Windows-1252.
func (p *parser) toUTF8(data []byte, cs string) string {
	cs = strings.ToLower(strings.TrimSpace(cs))
	switch cs {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
	default:
		r, err := charset.Reader(cs, bytes.NewReader(data))
		if err == nil {
			out, _ := readCapped(r, 4*len(data)+16)
			return strings.ToValidUTF8(string(out), "\uFFFD")
		}
		p.errorf("charset %.40q: %v", cs, err)
	}
	if utf8.Valid(data) {
		return string(data)
	}
	out, err := charmap.Windows1252.NewDecoder().Bytes(data)
	if err != nil {
		return strings.ToValidUTF8(string(data), "\uFFFD")
	}
	return string(out)
}

// text reads a text part.
func (p *parser) text(br *bodyReader, mt, cs, cte string, embedded bool) {
	data, truncated := readCapped(decoder(br, cte), p.lim.MaxPartBytes)
	if truncated {
		p.limit(LimitPartBytes)
	}
	if br.err != nil {
		p.errorf("read: %v", br.err)
	}
	s := p.toUTF8(data, cs)
	t := Text{Type: mt, Charset: strings.ToLower(strings.TrimSpace(cs)), Embedded: embedded, Truncated: truncated}
	if mt == "text/html" {
		t.FromHTML = true
		t.Content = p.html(s)
		if !embedded {
			p.ownHTML = true
		}
	} else {
		t.Content = s
		p.textURLs(s)
		if !embedded && strings.TrimSpace(s) != "" {
			p.ownPlain = true
		}
	}
	p.addText(t)
}

func (p *parser) addText(t Text) {
	left := p.lim.MaxTextBytes - p.textBytes
	if left <= 0 {
		p.limit(LimitText)
		return
	}
	if len(t.Content) > left {
		t.Content = cutUTF8(t.Content, left)
		t.Truncated = true
		p.limit(LimitText)
	}
	p.textBytes += len(t.Content)
	p.v.Texts = append(p.v.Texts, t)
}

// attachment reads a part that is not text: its decoded size, and the
// names inside it when it is a zip archive.
func (p *parser) attachment(br *bodyReader, a Attachment, cte string) {
	s := &zipSink{max: p.lim.MaxZipTail}
	_, _ = io.Copy(s, decoder(br, cte))
	a.Size = s.n
	a.Zip = s.isZip
	idx := p.addAttachment(a)
	if s.isZip && idx >= 0 {
		p.zipEntries(s, a.Name, a.Embedded)
	}
}

// addAttachment keeps a, and returns its index (-1 over the limit).
func (p *parser) addAttachment(a Attachment) int {
	if len(p.v.Attachments) >= p.lim.MaxAttachments {
		p.limit(LimitAttachments)
		return -1
	}
	a.Type = strings.ToLower(a.Type)
	a.Disposition = strings.ToLower(a.Disposition)
	p.v.Attachments = append(p.v.Attachments, a)
	return len(p.v.Attachments) - 1
}

// cutUTF8 cuts s to at most n bytes, at a rune boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
