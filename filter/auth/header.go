package auth

import (
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
)

// HeaderName is the field the check adds.
const HeaderName = "Authentication-Results"

// maxLine is the line length the header is folded to (RFC 5322 §2.1.1).
const maxLine = 78

// headerValue makes a value from the client or from DNS safe to put in a
// header: printable ASCII only (controls, quotes and backslashes would
// break the field or its quoting, 8-bit octets would need SMTPUTF8
// downstream), at most n octets.
func headerValue(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		c := s[i]
		if c > ' ' && c < 0x7f && c != '"' && c != '\\' {
			b.WriteByte(c)
		} else if c == ' ' {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

// authResults formats the Authentication-Results value (RFC 8601) with
// go-msgauth/authres: the authserv-id, then spf, one dkim per signature
// (dkim=none without one), dmarc with the policy as a comment; folded
// between results when it does not fit in one line of 78 octets.
func authResults(authserv string, s spfOutcome, d dkimOutcome, m dmarcOutcome) string {
	var parts []string
	add := func(r authres.Result) {
		// Format one result at a time so that a result without
		// parameters gets no trailing space.
		v := authres.Format("x", []authres.Result{r})
		parts = append(parts, strings.TrimSpace(strings.TrimPrefix(v, "x; ")))
	}

	sr := &authres.SPFResult{Value: authres.ResultValue(s.Result), Reason: headerValue(s.Reason, 100)}
	if s.MailFrom != "" {
		sr.From = headerValue(s.MailFrom, 256)
		if sr.From != s.MailFrom && s.Domain != "" {
			// An address that cannot be shown as it is: its domain
			// only (RFC 8601 §2.7.2 allows either).
			sr.From = s.Domain
		}
	} else {
		sr.Helo = s.Helo
	}
	if s.Result == "" {
		sr.Value = authres.ResultValue(spf.None)
	}
	add(sr)

	if len(d.Sigs) == 0 {
		add(&authres.DKIMResult{Value: authres.ResultNone})
	}
	for _, sig := range d.Sigs {
		add(&authres.GenericResult{Method: "dkim", Value: sig.Result, Params: map[string]string{
			"reason":   headerValue(sig.Reason, 100),
			"header.d": sig.Domain,
			"header.s": headerValue(sig.Selector, 63),
		}})
	}

	dr := &authres.DMARCResult{Value: m.Result, Reason: headerValue(m.Reason, 100), From: m.From}
	before := len(parts)
	add(dr)
	if c := m.comment(); c != "" {
		// authres has no comments: the policy goes right after the
		// result, as "dmarc=fail (p=reject) header.from=...".
		v := parts[before]
		head := "dmarc=" + string(m.Result)
		parts[before] = head + " (" + c + ")" + strings.TrimPrefix(v, head)
	}
	return fold(authserv, parts)
}

// fold joins the authserv-id and the results with "; " on one line when
// it fits in maxLine octets (counting the field name), and otherwise puts
// each result on a line of its own (CRLF TAB).
func fold(authserv string, parts []string) string {
	one := authserv + "; " + strings.Join(parts, "; ")
	if len(HeaderName)+2+len(one) <= maxLine {
		return one
	}
	return authserv + ";\r\n\t" + strings.Join(parts, ";\r\n\t")
}
