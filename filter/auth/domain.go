package auth

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"

	"github.com/emersion/go-message/textproto"
	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// normDomain returns the domain as SPF, DKIM and DMARC compare it: lower
// case, A-labels, no final dot; "" when s is not a domain name of at least
// two labels (an address literal, a bare host name, garbage).
func normDomain(s string) string {
	s = strings.TrimSuffix(strings.TrimSpace(s), ".")
	if s == "" || len(s) > 253 {
		return ""
	}
	ascii, err := idna.Lookup.ToASCII(s)
	if err != nil {
		return ""
	}
	s = strings.ToLower(ascii)
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return ""
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return ""
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return ""
			}
		}
	}
	return s
}

// orgDomain is the organisational domain of a normalised domain (RFC 7489
// §3.2): the public suffix plus one label, from the public suffix list; the
// domain itself when it is a public suffix.
func orgDomain(d string) string {
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return org
}

// aligned reports whether the authenticated domain d is aligned with the
// From domain (RFC 7489 §3.1): the same domain in strict mode, the same
// organisational domain in relaxed mode. Both are normalised.
func aligned(d, from string, strict bool) bool {
	if d == "" || from == "" {
		return false
	}
	if d == from {
		return true
	}
	return !strict && orgDomain(d) == orgDomain(from)
}

// domainOf returns the normalised domain of an address (the part after its
// last "@"), or "".
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return normDomain(addr[i+1:])
}

// addressParser parses From. Encoded words in unknown charsets are taken as
// they are rather than failing the whole field: only the addresses matter
// here, and a display name must not be a way to make the From domain
// unreadable (and so escape DMARC).
var addressParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, input io.Reader) (io.Reader, error) { return input, nil },
}}

// errNoFromDomain is the cause of a DMARC permerror: the message has no
// single From domain to apply a policy to (RFC 7489 §6.6.1).
var errNoFromDomain = errors.New("no single From domain")

// fromDomain returns the normalised domain of the message's From field: the
// author domain DMARC is about. A message with no From field, several From
// fields, an unparseable one, or addresses in several domains has none.
func fromDomain(h textproto.Header) (string, error) {
	vals := h.Values("From")
	switch len(vals) {
	case 0:
		return "", fmt.Errorf("%w: no From field", errNoFromDomain)
	case 1:
	default:
		return "", fmt.Errorf("%w: %d From fields", errNoFromDomain, len(vals))
	}
	addrs, err := addressParser.ParseList(vals[0])
	if err != nil {
		return "", fmt.Errorf("%w: From unparseable", errNoFromDomain)
	}
	if len(addrs) == 0 {
		return "", fmt.Errorf("%w: From without an address", errNoFromDomain)
	}
	var domain string
	for _, a := range addrs {
		d := domainOf(a.Address)
		if d == "" {
			return "", fmt.Errorf("%w: From address without a usable domain", errNoFromDomain)
		}
		if domain != "" && d != domain {
			return "", fmt.Errorf("%w: From addresses in several domains", errNoFromDomain)
		}
		domain = d
	}
	return domain, nil
}
