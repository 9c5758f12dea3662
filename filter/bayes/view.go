package bayes

import (
	"io"
	"path"
	"strings"

	"github.com/mxgate/mxgate/filter/mimeview"
)

// DocFromView is the tokenizer's input from the message's parsed view
// (filter/mimeview): header fields decoded, the text parts (HTML as its
// visible text), the normalised URLs, and the attachments' types and
// file name extensions. Bounded by the view's limits and by Tokenize's.
func DocFromView(v *mimeview.View) *Doc {
	d := &Doc{}
	fields := v.Header.Fields()
	for fields.Next() && len(d.Header) < maxHeaders {
		d.Header = append(d.Header, [2]string{fields.Key(), mimeview.DecodeHeader(fields.Value())})
	}
	for _, t := range v.Texts {
		d.Texts = append(d.Texts, t.Content)
	}
	for i, u := range v.URLs {
		if i >= maxURLs {
			break
		}
		s := u.Norm
		if s == "" {
			s = u.Raw
		}
		d.URLs = append(d.URLs, s)
	}
	for i, a := range v.Attachments {
		if i >= maxParts {
			break
		}
		typ := a.Type
		if typ == "" {
			typ = "zip-entry"
		}
		if ext := strings.ToLower(path.Ext(a.Name)); ext != "" && len(ext) <= 10 {
			typ += " " + ext
		}
		d.Parts = append(d.Parts, typ)
	}
	if v.HTMLOnly {
		d.Flags = append(d.Flags, "html-only")
	}
	for i, h := range v.Hidden {
		if i >= maxParts {
			break
		}
		d.Flags = append(d.Flags, "hidden:"+h.Reason)
	}
	for i, w := range v.Words {
		if i >= maxParts {
			break
		}
		d.Flags = append(d.Flags, "encoded-word:"+w.Charset)
	}
	return d
}

// ParseMessage reads a message (as stored in the spool) into a Doc through
// mimeview, under its default limits, as the check reads a spooled one.
func ParseMessage(r io.Reader) (*Doc, error) {
	return DocFromView(mimeview.Parse(r, mimeview.DefaultLimits)), nil
}
