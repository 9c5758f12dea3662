package mimeview

import (
	"net/url"
	"strings"

	"golang.org/x/net/idna"
)

const maxURLLen = 2048

// textURLs finds the URLs written in a text: http://, https:// and www.
// Each prefix's next occurrence is remembered, so the text is scanned
// once per prefix however many URLs it holds.
func (p *parser) textURLs(s string) {
	prefixes := [...]string{"http://", "https://", "www."}
	next := [...]int{-2, -2, -2} // -2: not searched yet, -1: none left
	i := 0
	for i < len(s) {
		if p.halt() {
			return
		}
		best := -1
		for k, pre := range prefixes {
			if next[k] == -1 {
				continue
			}
			if next[k] < i {
				next[k] = findPrefix(s, i, pre)
			}
			if next[k] >= 0 && (best < 0 || next[k] < best) {
				best = next[k]
			}
		}
		if best < 0 {
			return
		}
		k := best
		for k < len(s) && !urlStop(s[k]) {
			k++
		}
		p.addURL(trimURL(s[best:k]), false)
		i = max(k, best+1)
	}
}

// findPrefix is the index of the next occurrence of pre at or after from
// (www. only at the start of a word), -1 if none.
func findPrefix(s string, from int, pre string) int {
	for from < len(s) {
		j := indexFold(s[from:], pre)
		if j < 0 {
			return -1
		}
		at := from + j
		if pre != "www." || at == 0 || !wordByte(s[at-1]) {
			return at
		}
		from = at + 1
	}
	return -1
}

func wordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '@' || c == '/' || c == '_'
}

// indexFold is strings.Index with ASCII case folding of s (pre is lower
// case).
func indexFold(s, pre string) int {
	for i := 0; i+len(pre) <= len(s); i++ {
		c := s[i]
		if c != pre[0] && c+('a'-'A') != pre[0] {
			continue
		}
		if strings.EqualFold(s[i:i+len(pre)], pre) {
			return i
		}
	}
	return -1
}

// urlStop ends a URL in text.
func urlStop(c byte) bool {
	return c <= ' ' || c == '<' || c == '>' || c == '"' || c == '\'' || c == '`' || c == '{' || c == '}' || c == '|' || c == '^' || c == 0x7f
}

// trimURL strips the punctuation that ends a sentence, not a URL.
func trimURL(s string) string {
	for s != "" {
		c := s[len(s)-1]
		switch {
		case strings.IndexByte(".,;:!?*]", c) >= 0:
			s = s[:len(s)-1]
		case c == ')' && strings.Count(s, "(") < strings.Count(s, ")"):
			s = s[:len(s)-1]
		default:
			return s
		}
	}
	return s
}

// addURL keeps a URL, normalised, once.
func (p *parser) addURL(raw string, fromHTML bool) {
	norm, host, ok := normalizeURL(raw)
	if !ok || p.urlSeen[norm] {
		return
	}
	if len(p.v.URLs) >= p.lim.MaxURLs {
		p.limit(LimitURLs)
		return
	}
	p.urlSeen[norm] = true
	if len(raw) > maxURLLen {
		raw = cutUTF8(raw, maxURLLen)
	}
	p.v.URLs = append(p.v.URLs, URL{Raw: strings.ToValidUTF8(raw, ""), Norm: norm, Host: host, FromHTML: fromHTML})
}

// normalizeURL returns the URL with its scheme and host lower-cased, the
// host in ASCII, the default port dropped and backslashes (read as
// slashes by browsers) turned to slashes; only web URLs (http, https,
// scheme-relative, and www. without a scheme) are kept.
func normalizeURL(raw string) (norm, host string, ok bool) {
	s := strings.TrimSpace(raw)
	s = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
	s = strings.ReplaceAll(s, `\`, "/")
	var scheme, rest string
	switch {
	case hasPrefixFold(s, "http://"):
		scheme, rest = "http", s[7:]
	case hasPrefixFold(s, "https://"):
		scheme, rest = "https", s[8:]
	case strings.HasPrefix(s, "//"):
		scheme, rest = "http", s[2:]
	case hasPrefixFold(s, "www."):
		scheme, rest = "http", s
	default:
		return "", "", false
	}
	rest = strings.TrimLeft(rest, "/")
	auth, path := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		auth, path = rest[:i], rest[i:]
	}
	if i := strings.LastIndexByte(auth, '@'); i >= 0 {
		auth = auth[i+1:]
	}
	hostPart, port := auth, ""
	if strings.HasPrefix(hostPart, "[") {
		if i := strings.IndexByte(hostPart, ']'); i >= 0 {
			hostPart, port = hostPart[:i+1], strings.TrimPrefix(hostPart[i+1:], ":")
		}
	} else if i := strings.LastIndexByte(hostPart, ':'); i >= 0 {
		hostPart, port = hostPart[:i], hostPart[i+1:]
	}
	if h, err := url.PathUnescape(hostPart); err == nil {
		hostPart = h
	}
	host = strings.TrimSuffix(strings.ToLower(hostPart), ".")
	if host == "" || len(host) > 253 {
		return "", "", false
	}
	if !isASCII(host) {
		a, err := idna.Lookup.ToASCII(host)
		if err != nil {
			a, err = idna.Punycode.ToASCII(host)
			if err != nil {
				return "", "", false
			}
		}
		host = a
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == '[' || c == ']' || c == ':') {
			return "", "", false
		}
	}
	if port != "" && !allDigits(port) {
		return "", "", false
	}
	if port == "80" && scheme == "http" || port == "443" && scheme == "https" {
		port = ""
	}
	norm = scheme + "://" + host
	if port != "" {
		norm += ":" + port
	}
	norm += path
	if len(norm) > maxURLLen {
		norm = cutUTF8(norm, maxURLLen)
	}
	return strings.ToValidUTF8(norm, ""), host, true
}

func hasPrefixFold(s, pre string) bool {
	return len(s) >= len(pre) && strings.EqualFold(s[:len(pre)], pre)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != "" && len(s) <= 5
}
