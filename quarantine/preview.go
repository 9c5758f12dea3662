package quarantine

import (
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mxgate/mxgate/filter/mimeview"
)

// Preview is what an operator may safely look at of a quarantined
// message: its header fields and its text as plain text. It never holds
// the message's HTML, scripts or remote references: an HTML-only message
// is shown as the visible text mimeview extracts from it, and every
// string is printable text (control characters dropped), bounded.
type Preview struct {
	Headers []HeaderField `json:"headers"`
	Subject string        `json:"subject"`
	// Text is the first text part (text/plain preferred), as plain text.
	Text string `json:"text"`
	// TextFromHTML is set when Text was extracted from an HTML part.
	TextFromHTML bool     `json:"text_from_html,omitempty"`
	Attachments  []string `json:"attachments,omitempty"`
	// Truncated is set when the text or the header list was cut.
	Truncated bool `json:"truncated,omitempty"`
}

// HeaderField is one header field, its value decoded (RFC 2047).
type HeaderField struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Bounds of a preview.
const (
	previewText      = 16 << 10
	previewFields    = 200
	previewField     = 2048
	previewAttachmts = 100
)

var previewLimits = mimeview.Limits{MaxBytes: 64 << 20, MaxPartBytes: 256 << 10, MaxTextBytes: 1 << 20}

// MakePreview reads a message (as Store.Body gives it) into its preview.
func MakePreview(r io.Reader) Preview {
	v := mimeview.Parse(r, previewLimits)
	p := Preview{Subject: safeText(v.Subject, previewField), Headers: []HeaderField{}}
	fields := v.Header.Fields()
	for fields.Next() {
		if len(p.Headers) == previewFields {
			p.Truncated = true
			break
		}
		p.Headers = append(p.Headers, HeaderField{
			Name:  safeText(fields.Key(), 200),
			Value: safeText(mimeview.DecodeHeader(fields.Value()), previewField),
		})
	}
	var text *mimeview.Text
	for i := range v.Texts {
		t := &v.Texts[i]
		if t.Embedded {
			continue
		}
		if text == nil || text.FromHTML && !t.FromHTML {
			text = t
		}
	}
	if text != nil {
		p.Text = safeMultiline(text.Content, previewText)
		p.TextFromHTML = text.FromHTML
		p.Truncated = p.Truncated || text.Truncated || len(text.Content) > previewText
	}
	for _, a := range v.Attachments {
		if len(p.Attachments) == previewAttachmts {
			p.Truncated = true
			break
		}
		name := a.Name
		if a.InZip != "" {
			name = a.InZip + ": " + name
		}
		p.Attachments = append(p.Attachments, safeText(name+" ("+a.Type+")", 512))
	}
	return p
}

// safeText is s as one printable line of at most n bytes.
func safeText(s string, n int) string {
	return clean(s, n, false)
}

// safeMultiline keeps line breaks and tabs.
func safeMultiline(s string, n int) string {
	return clean(s, n, true)
}

func clean(s string, n int, lines bool) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			continue
		case r == '\n' && lines, r == '\t':
		case r == '\r' || r == '\n':
			r = ' '
		case unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r):
			continue
		}
		if b.Len()+utf8.RuneLen(r) > n {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
