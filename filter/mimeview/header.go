package mimeview

import (
	"mime"
	"net/mail"
	"regexp"
	"strings"

	"github.com/emersion/go-message/charset"
)

// wordDecoder decodes RFC 2047 encoded-words in every charset go-message
// knows.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// encodedWord matches one RFC 2047 encoded-word (RE2: linear time).
var encodedWord = regexp.MustCompile(`=\?([^?\s]{1,75})\?([bBqQ])\?([^?\s]*)\?=`)

// maxFieldLen bounds a header value decoded for the view.
const maxFieldLen = 16 << 10

// decodeField decodes a text field (Subject) and records its words.
func (p *parser) decodeField(field, v string) string {
	s, words := decodeWords(v, p.v.Words, field)
	p.v.Words = words
	return s
}

// decodeWords decodes the encoded-words of v; words, when not nil, gets
// one EncodedWord per word found (up to maxWords in all). Words that do not
// decode are left as written. White space between two encoded-words is
// dropped (RFC 2047 §6.2).
func decodeWords(v string, words []EncodedWord, field string) (string, []EncodedWord) {
	if len(v) > maxFieldLen {
		v = cutUTF8(v, maxFieldLen)
	}
	locs := encodedWord.FindAllStringSubmatchIndex(v, -1)
	if len(locs) == 0 {
		return cleanText(v), words
	}
	var b strings.Builder
	last := 0
	prevWord := false
	for _, m := range locs {
		gap := v[last:m[0]]
		word := v[m[0]:m[1]]
		dec, err := wordDecoder.Decode(word)
		if !(prevWord && err == nil && strings.TrimSpace(gap) == "") {
			b.WriteString(gap)
		}
		if err != nil {
			b.WriteString(word)
		} else {
			b.WriteString(dec)
		}
		prevWord = err == nil
		if words != nil || field != "" {
			if len(words) < maxWords {
				cs := strings.ToLower(v[m[2]:m[3]])
				if i := strings.IndexByte(cs, '*'); i >= 0 { // RFC 2231 language suffix
					cs = cs[:i]
				}
				words = append(words, EncodedWord{
					Field:    field,
					Charset:  cs,
					Encoding: upper(v[m[4]]),
					ASCII:    err == nil && printableASCII(dec),
					Bad:      err != nil,
				})
			}
		}
		last = m[1]
	}
	b.WriteString(v[last:])
	return cleanText(b.String()), words
}

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// printableASCII: text that needed no encoding.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c > 0x7e {
			return false
		}
	}
	return true
}

// cleanText makes a decoded value valid UTF-8 on one line.
func cleanText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.ContainsAny(s, "\r\n\x00") {
		s = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ", "\x00", "").Replace(s)
	}
	return strings.TrimSpace(s)
}

// addresses parses an address field; when it does not parse as an address
// list, the addresses written in it are taken as they are found.
func (p *parser) addresses(field, v string) []Address {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	if len(v) > maxFieldLen {
		v = cutUTF8(v, maxFieldLen)
	}
	_, p.v.Words = decodeWords(v, p.v.Words, field)
	ap := mail.AddressParser{WordDecoder: wordDecoder}
	list, err := ap.ParseList(v)
	if err == nil {
		out := make([]Address, 0, min(len(list), maxAddresses))
		for _, a := range list {
			if len(out) >= maxAddresses {
				break
			}
			out = append(out, Address{Name: cleanText(a.Name), Addr: cleanText(a.Address)})
		}
		return out
	}
	return scanAddresses(v)
}

// scanAddresses finds the addresses of a malformed field: <...> groups,
// else words holding an @; a display name is what comes before a <...>.
func scanAddresses(v string) []Address {
	var out []Address
	rest := v
	for len(out) < maxAddresses {
		i := strings.IndexByte(rest, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '>')
		if j < 0 {
			break
		}
		addr := strings.TrimSpace(rest[i+1 : i+j])
		name := strings.Trim(strings.TrimSpace(rest[:i]), `",`)
		if k := strings.LastIndexByte(name, ','); k >= 0 {
			name = strings.TrimSpace(name[k+1:])
		}
		name, _ = decodeWords(name, nil, "")
		if strings.Contains(addr, "@") {
			out = append(out, Address{Name: name, Addr: cleanText(addr)})
		}
		rest = rest[i+j+1:]
	}
	if len(out) > 0 {
		return out
	}
	for _, w := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == ';' }) {
		w = strings.Trim(w, `"'()<>[]`)
		if strings.Count(w, "@") == 1 && len(out) < maxAddresses {
			out = append(out, Address{Addr: cleanText(w)})
		}
	}
	return out
}

// domainOf is the lower-cased domain of an address.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.TrimSuffix(strings.ToLower(strings.Trim(addr[i+1:], " <>[]\"'")), ".")
}

// DecodeHeader decodes the encoded-words of any header value.
func DecodeHeader(v string) string {
	s, _ := decodeWords(v, nil, "")
	return s
}
