package bayes

import (
	"net/mail"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds of the tokenizer: whatever a message holds, its features are at
// most MaxFeatures, each read from at most MaxTokenBytes of a word.
const (
	MinTokenBytes = 3    // shorter words are dropped (SpamBayes' choice too)
	MaxTokenBytes = 40   // longer words become one "skip:" token
	MaxWords      = 5000 // body words read per message
	MaxFeatures   = 8192 // distinct features per message
	maxHeaders    = 200  // header fields read
	maxURLs       = 200
	maxParts      = 100
	maxHeaderText = 4096 // bytes of one header value read
)

// Features chooses what the tokenizer emits besides the words of the text,
// the subject's words and the URL hosts.
type Features struct {
	// Headers adds header-specific tokens: sender and reply-to domains,
	// the sender's display name, recipient counts, the Message-ID's
	// domain, the mailer, header names present, the media types of the
	// parts, the file name extensions of attachments, and the Doc's
	// Flags ("flag:html-only").
	Headers bool
	// Pairs adds orthogonal sparse bigrams (OSB): each body word paired
	// with each of the next Window-1 words, the distance part of the pair.
	Pairs bool
	// Window is the OSB window; 5 when zero (as rspamd's default).
	Window int
}

// DefaultFeatures is the model mxgate runs, chosen with `make spam-eval`
// (see the README's "Spam filtering" section, Bayes).
// OSB pairs are off: with chi-square combining they made the
// probabilities of mixed messages less sure, not better separated.
var DefaultFeatures = Features{Headers: true}

// Tokenize returns the message's features as 64-bit hashes, each at most
// once, at most MaxFeatures. Single tokens come first so that pairs are
// what a very long message loses.
func Tokenize(d *Doc, f Features) []uint64 {
	t := newTokenizer(f)
	t.doc(d, nil)
	return t.out
}

// TokenStrings returns the single tokens of Tokenize as text (pairs are
// hashes only), for tests and debugging.
func TokenStrings(d *Doc, f Features) []string {
	var s []string
	t := newTokenizer(f)
	t.doc(d, func(tok string) { s = append(s, tok) })
	return s
}

type tokenizer struct {
	f    Features
	seen map[uint64]struct{}
	out  []uint64
	text func(string)
}

func newTokenizer(f Features) *tokenizer {
	if f.Window <= 1 {
		f.Window = 5
	}
	return &tokenizer{f: f, seen: make(map[uint64]struct{}, 512)}
}

func (t *tokenizer) add(h uint64) {
	if len(t.out) >= MaxFeatures {
		return
	}
	if _, ok := t.seen[h]; ok {
		return
	}
	t.seen[h] = struct{}{}
	t.out = append(t.out, h)
}

func (t *tokenizer) emit(tok string) {
	if len(t.out) >= MaxFeatures {
		return
	}
	if t.text != nil {
		if _, ok := t.seen[hashString(tok)]; !ok {
			t.text(tok)
		}
	}
	t.add(hashString(tok))
}

func (t *tokenizer) doc(d *Doc, text func(string)) {
	t.text = text
	t.header(d.Header)
	if t.f.Headers {
		for i, p := range d.Parts {
			if i >= maxParts {
				break
			}
			typ, ext, _ := strings.Cut(strings.ToLower(p), " ")
			t.emit("part:" + clip(typ))
			if ext != "" {
				t.emit("ext:" + clip(ext))
			}
		}
		for i, f := range d.Flags {
			if i >= maxParts {
				break
			}
			t.emit("flag:" + clip(f))
		}
	}
	for i, u := range d.URLs {
		if i >= maxURLs {
			break
		}
		t.url(u)
	}
	var words []string
	for _, text := range d.Texts {
		words = t.words(text, words)
		if len(words) >= MaxWords {
			break
		}
	}
	for _, w := range words {
		t.emit(w)
	}
	if t.f.Pairs {
		// Pairs last: bounded by what is left of MaxFeatures.
		for i := range words {
			for d := 1; d < t.f.Window && i+d < len(words); d++ {
				t.add(hashPair(words[i], words[i+d], d))
			}
		}
	}
}

// words splits text on white space into normalized words and appends them
// to dst, at most MaxWords in all. Words that are URLs or addresses are
// left to the URL tokens; an over-long word becomes "skip:C N", its first
// character and its length in tens (as SpamBayes does).
func (t *tokenizer) words(text string, dst []string) []string {
	for len(text) > 0 && len(dst) < MaxWords {
		text = strings.TrimLeftFunc(text, unicode.IsSpace)
		end := strings.IndexFunc(text, unicode.IsSpace)
		if end < 0 {
			end = len(text)
		}
		w := text[:end]
		text = text[end:]
		if w = normWord(w); w == "" {
			continue
		}
		switch {
		case strings.Contains(w, "://") || strings.HasPrefix(w, "www."):
			continue
		case strings.Contains(w, "@"):
			if t.f.Headers {
				if _, dom, ok := strings.Cut(w, "@"); ok && strings.Contains(dom, ".") {
					dst = append(dst, "email:"+clip(dom))
				}
			}
			continue
		}
		if len(w) > MaxTokenBytes {
			r, _ := utf8.DecodeRuneInString(w)
			dst = append(dst, "skip:"+string(r)+" "+strconv.Itoa(len(w)/10*10))
			continue
		}
		if len(w) < MinTokenBytes {
			continue
		}
		dst = append(dst, w)
	}
	return dst
}

// normWord lower-cases a word and trims the punctuation around it.
func normWord(w string) string {
	if len(w) > 4*MaxTokenBytes {
		// Long words are only measured; keep the first bytes valid.
		w = w[:4*MaxTokenBytes]
	}
	w = strings.TrimFunc(w, func(r rune) bool {
		return unicode.IsPunct(r) && r != '$' && r != '%' && r != '!' || r == '<' || r == '>' || r == '|' || r == '='
	})
	return strings.ToLower(w)
}

// header emits the header tokens. The subject's words are always there;
// the rest with Features.Headers.
func (t *tokenizer) header(h [][2]string) {
	fromDomain := ""
	rcpts := 0
	received := 0
	names := map[string]bool{}
	for i, kv := range h {
		if i >= maxHeaders {
			break
		}
		name := strings.ToLower(kv[0])
		v := kv[1]
		if len(v) > maxHeaderText {
			v = v[:maxHeaderText]
		}
		if name == "subject" {
			t.subject(v)
			continue
		}
		if !t.f.Headers {
			continue
		}
		if len(name) <= MaxTokenBytes && !names[name] {
			names[name] = true
			t.emit("header:" + name)
		}
		switch name {
		case "from":
			fromDomain = t.address("from", v)
		case "reply-to":
			if d := t.address("reply-to", v); d != "" && fromDomain != "" && d != fromDomain {
				t.emit("reply-to:other-domain")
			}
		case "to", "cc":
			if strings.Contains(strings.ToLower(v), "undisclosed") {
				t.emit(name + ":undisclosed")
			}
			if l, err := mail.ParseAddressList(v); err == nil {
				rcpts += len(l)
			} else {
				t.emit(name + ":invalid")
			}
		case "message-id":
			v = strings.Trim(strings.TrimSpace(v), "<>")
			if _, dom, ok := strings.Cut(v, "@"); ok {
				t.emit("msgid-domain:" + clip(strings.ToLower(dom)))
			} else {
				t.emit("msgid:invalid")
			}
		case "x-mailer", "user-agent":
			t.emit("mailer:" + clip(mailerName(v)))
		case "received":
			received++
		case "content-type":
			typ, _, _ := strings.Cut(v, ";")
			t.emit("content-type:" + clip(strings.ToLower(strings.TrimSpace(typ))))
			if i := strings.Index(strings.ToLower(v), "charset="); i >= 0 {
				cs := strings.Trim(strings.Fields(v[i+8:] + " ")[0], `"';`)
				t.emit("charset:" + clip(strings.ToLower(cs)))
			}
		}
	}
	if !t.f.Headers {
		return
	}
	t.emit("rcpts:" + bucket(rcpts))
	t.emit("received:" + bucket(received))
	if !names["message-id"] {
		t.emit("msgid:none")
	}
}

func (t *tokenizer) subject(v string) {
	for _, w := range strings.Fields(v) {
		w = normWord(w)
		if len(w) >= 2 && len(w) <= MaxTokenBytes {
			t.emit("subject:" + w)
		}
	}
}

// address emits the tokens of an address field and returns its domain.
func (t *tokenizer) address(field, v string) string {
	a, err := mail.ParseAddress(v)
	if err != nil {
		t.emit(field + ":invalid")
		return ""
	}
	_, dom, _ := strings.Cut(strings.ToLower(a.Address), "@")
	t.emit(field + "-domain:" + clip(dom))
	if field == "from" {
		for _, w := range strings.Fields(a.Name) {
			if w = normWord(w); len(w) >= 2 && len(w) <= MaxTokenBytes {
				t.emit("from-name:" + w)
			}
		}
		if a.Name == "" {
			t.emit("from-name:none")
		}
	}
	return dom
}

// url emits the URL's host and its parent domains ("url:a.b.example.com",
// "url:b.example.com", "url:example.com"); an address literal is
// "url:ip".
func (t *tokenizer) url(raw string) {
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		t.emit("url:invalid")
		return
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if _, err := netip.ParseAddr(host); err == nil {
		t.emit("url:ip")
		return
	}
	for n := 0; n < 4 && strings.Count(host, ".") >= 1; n++ {
		t.emit("url:" + clip(host))
		_, host, _ = strings.Cut(host, ".")
	}
}

// mailerName is the mailer's name without its version: "outlook express".
func mailerName(v string) string {
	var b strings.Builder
	for _, w := range strings.Fields(strings.ToLower(v)) {
		if strings.IndexFunc(w, unicode.IsDigit) >= 0 || b.Len() > 30 {
			break
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(w)
	}
	return b.String()
}

// bucket is a count as a bounded token: 0, 1, 2, 3-4, 5-8, 9-16, many.
func bucket(n int) string {
	switch {
	case n <= 2:
		return strconv.Itoa(n)
	case n <= 4:
		return "3-4"
	case n <= 8:
		return "5-8"
	case n <= 16:
		return "9-16"
	}
	return "many"
}

// clip bounds a token's variable part.
func clip(s string) string {
	if len(s) > MaxTokenBytes {
		return s[:MaxTokenBytes]
	}
	return s
}

// FNV-1a, 64 bits: stable across nodes and releases, as the stored counts
// are keyed by it.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func hashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// hashPair is the feature of words a and b, d words apart.
func hashPair(a, b string, d int) uint64 {
	h := hashString(a)
	h ^= uint64(0xff)
	h *= fnvPrime
	h ^= uint64(d)
	h *= fnvPrime
	for i := 0; i < len(b); i++ {
		h ^= uint64(b[i])
		h *= fnvPrime
	}
	// Finalizer (splitmix64) so that pairs spread apart from words.
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
