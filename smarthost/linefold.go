package smarthost

import "io"

// maxOutputLine is the longest line, without its CRLF, that delivery sends
// (RFC 5321 §4.5.3.1.6: 998 octets of text). mxgate accepts and stores longer
// lines as they came; on the way out they are folded, as Postfix's
// smtp_line_length_limit does, so that strict next hops take the message.
const maxOutputLine = 998

// lineFolder breaks lines longer than limit by inserting CRLF and a space:
// in the header section that is a continuation line, which keeps the
// header's meaning; in a body it adds one space where the line was broken.
type lineFolder struct {
	w     io.Writer
	limit int
	n     int // octets on the current line, not counting CR
	buf   []byte
}

func newLineFolder(w io.Writer, limit int) *lineFolder {
	return &lineFolder{w: w, limit: limit}
}

func (f *lineFolder) Write(p []byte) (int, error) {
	f.buf = f.buf[:0]
	start, folded := 0, false
	for i, c := range p {
		switch {
		case c == '\n':
			f.n = 0
		case c == '\r':
			// Counted with the line end that follows it.
		case f.n >= f.limit:
			f.buf = append(f.buf, p[start:i]...)
			f.buf = append(f.buf, "\r\n "...)
			start, folded = i, true
			f.n = 2 // the space and this octet
		default:
			f.n++
		}
	}
	if !folded {
		if _, err := f.w.Write(p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	f.buf = append(f.buf, p[start:]...)
	if _, err := f.w.Write(f.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}
