package dnsbl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message"

	"github.com/mxgate/mxgate/filter"
)

// Bounds of ScanURLHosts.
const (
	maxScanRaw  = 8 << 20 // octets of the message read
	maxScanText = 1 << 20 // octets of decoded text scanned
	maxParts    = 100     // MIME parts visited
	maxDepth    = 8       // multipart and message/rfc822 nesting
	maxHosts    = 200     // distinct hosts kept
	maxHostLen  = 300     // octets of an authority read
)

// ScanURLHosts returns the hosts of the http and https URLs, and of the
// bare www. names, in the text parts of m (text/*, or no Content-Type),
// transfer encodings decoded, in the order found and without repeats.
// A message whose header cannot be parsed is scanned as raw text. The
// scan is bounded: at most maxScanRaw octets of the message are read,
// maxScanText octets of text scanned, maxParts parts visited, maxHosts
// hosts kept. A MIME structure broken half-way ends the scan with the
// hosts found so far, without an error.
func ScanURLHosts(ctx context.Context, m *filter.Message) ([]string, error) {
	r, err := m.Open()
	if err != nil {
		return nil, fmt.Errorf("scan URLs: %w", err)
	}
	defer r.Close()
	s := &hostScanner{ctx: ctx, textLeft: maxScanText, seen: map[string]bool{}}
	e, err := message.Read(io.LimitReader(r, maxScanRaw))
	if e == nil {
		// No usable header: the whole message as text.
		if r2, oerr := m.Open(); oerr == nil {
			defer r2.Close()
			s.text(r2)
		} else {
			return nil, fmt.Errorf("scan URLs: %w", errors.Join(err, oerr))
		}
	} else {
		s.walk(e, 0)
	}
	if err := ctx.Err(); err != nil {
		return s.hosts, fmt.Errorf("scan URLs: %w", err)
	}
	return s.hosts, nil
}

type hostScanner struct {
	ctx      context.Context
	textLeft int64
	parts    int
	seen     map[string]bool
	hosts    []string
}

// done reports whether the scan must stop.
func (s *hostScanner) done() bool {
	return s.textLeft <= 0 || len(s.hosts) >= maxHosts || s.parts > maxParts || s.ctx.Err() != nil
}

// walk scans the text of e and of its parts.
func (s *hostScanner) walk(e *message.Entity, depth int) {
	s.parts++
	if s.done() {
		return
	}
	if mr := e.MultipartReader(); mr != nil {
		if depth >= maxDepth {
			return
		}
		for !s.done() {
			p, err := mr.NextPart()
			if p == nil || (err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err)) {
				return // the end, or a broken structure
			}
			s.walk(p, depth+1)
		}
		return
	}
	mt, _, _ := e.Header.ContentType()
	switch {
	case mt == "" || strings.HasPrefix(mt, "text/"):
		s.text(e.Body)
	case mt == "message/rfc822" && depth < maxDepth:
		if inner, _ := message.Read(e.Body); inner != nil {
			s.walk(inner, depth+1)
		}
	}
}

// text scans what r gives, up to what is left of the text budget. A read
// error ends the text: what was read is scanned.
func (s *hostScanner) text(r io.Reader) {
	b, _ := io.ReadAll(io.LimitReader(r, s.textLeft))
	s.textLeft -= int64(len(b))
	// ASCII lower case in place: schemes and hosts are case-insensitive.
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	s.scan(b)
}

// scan finds the URLs of b (lower case).
func (s *hostScanner) scan(b []byte) {
	for i := 0; i < len(b) && len(s.hosts) < maxHosts; {
		k := bytes.Index(b[i:], []byte("://"))
		if k < 0 {
			break
		}
		p := i + k
		if schemeBefore(b, p) {
			s.authority(b[p+3:])
		}
		i = p + 3
	}
	for i := 0; i < len(b) && len(s.hosts) < maxHosts; {
		k := bytes.Index(b[i:], []byte("www."))
		if k < 0 {
			break
		}
		p := i + k
		if p == 0 || !(hostByte(b[p-1]) || b[p-1] == '/' || b[p-1] == '@') {
			s.authority(b[p:])
		}
		i = p + 4
	}
}

// schemeBefore reports whether "http" or "https", not the end of a longer
// word, ends at p.
func schemeBefore(b []byte, p int) bool {
	for _, scheme := range []string{"https", "http"} {
		start := p - len(scheme)
		if start >= 0 && string(b[start:p]) == scheme && (start == 0 || !schemeByte(b[start-1])) {
			return true
		}
	}
	return false
}

func schemeByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'
}

func hostByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_'
}

// authority takes the host of the authority that starts b: userinfo and
// port dropped, letters of any script kept (IDN), anything else ends it.
func (s *hostScanner) authority(b []byte) {
	if len(b) > maxHostLen {
		b = b[:maxHostLen]
	}
	end := 0
	for end < len(b) {
		c := b[end]
		if c < utf8.RuneSelf {
			if hostByte(c) || c == '@' || c == ':' {
				end++
				continue
			}
			break
		}
		r, n := utf8.DecodeRune(b[end:])
		if r == utf8.RuneError || !(unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)) {
			break
		}
		end += n
	}
	auth := string(b[:end])
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		auth = auth[at+1:]
	}
	if colon := strings.IndexByte(auth, ':'); colon >= 0 {
		auth = auth[:colon]
	}
	host := strings.Trim(auth, ".-_")
	if host == "" || s.seen[host] {
		return
	}
	s.seen[host] = true
	s.hosts = append(s.hosts, host)
}
