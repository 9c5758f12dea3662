package gateway

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"
)

// maxHops is the Received header count at which a message is taken to be
// looping (RFC 5321 §6.3 suggests at least 100; Postfix uses 50).
const maxHops = 50

var errBareCR = errors.New("bare CR in message data")
var errTooManyHops = errors.New("too many Received headers")
var errTooLarge = errors.New("message too large")

// spoolWriteError is a failure to write the message into the spool (a full
// or read-only disk), as opposed to a failure to read it from the client.
type spoolWriteError struct{ err error }

func (e *spoolWriteError) Error() string { return "write to the spool: " + e.err.Error() }
func (e *spoolWriteError) Unwrap() error { return e.err }

// bodyCopier streams message data into the spool while enforcing the SMTP
// line-ending rules:
//
//   - a bare LF is normalised to CRLF, so that the stored message has one
//     reading only. "<LF>.<LF>" and "<LF>.<CR><LF>" (the SMTP smuggling
//     family) become an ordinary line holding a dot, which the delivery
//     side dot-stuffs: exactly one message goes out, never two.
//   - a bare CR (a CR not followed by LF) is refused (RFC 5321 §2.3.8):
//     "<CR>.<CR>" would otherwise end the message early at an MTA that
//     takes a lone CR as a line end.
//
// In the header section it works a whole field at a time: it counts
// Received headers to stop loops, and it drops fields that would forge
// mxgate's own verdict: every X-Spam-* field, and Authentication-Results
// fields that claim this node's authserv-id (RFC 8601 §5). It counts the
// bytes received and stored, to enforce the size limit while streaming
// (BDAT chunks reach Data without go-smtp's DATA size check).
type bodyCopier struct {
	dst      io.Writer
	maxBytes int64
	authserv string // this node's authserv-id (its hostname)

	n           int64 // bytes received
	stored      int64 // bytes written to dst: LF becomes CRLF, so it can grow
	cr          bool  // last byte was a CR, not yet written
	inHeader    bool
	atLineStart bool
	field       []byte // the header field being read, not yet written
	spilled     bool   // the field outgrew maxFieldBuffer and is being written as it comes
	hops        int
	dropped     int // header fields dropped
	out         []byte
}

// maxFieldBuffer bounds one header field held back for a decision; a longer
// field is kept, whatever its name.
const maxFieldBuffer = 64 << 10

func newBodyCopier(dst io.Writer, maxBytes int64, authserv string) *bodyCopier {
	return &bodyCopier{dst: dst, maxBytes: maxBytes, authserv: authserv, inHeader: true, atLineStart: true, out: make([]byte, 0, 64<<10)}
}

const receivedPrefix = "received:"

func (b *bodyCopier) copyFrom(r io.Reader) (int64, error) {
	buf := make([]byte, 32<<10)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			b.n += int64(n)
			if b.maxBytes > 0 && b.n > b.maxBytes {
				return b.n, errTooLarge
			}
			if err := b.process(buf[:n]); err != nil {
				return b.n, err
			}
			// The limit holds for what is stored too: a message of
			// bare LFs doubles in size when they become CRLF.
			if b.maxBytes > 0 && b.stored+int64(len(b.out)+len(b.field)) > b.maxBytes {
				return b.n, errTooLarge
			}
		}
		if rerr == io.EOF {
			if b.cr {
				return b.n, errBareCR
			}
			if err := b.endField(); err != nil {
				return b.n, err
			}
			return b.n, b.flush()
		}
		if rerr != nil {
			return b.n, rerr
		}
	}
}

func (b *bodyCopier) process(p []byte) error {
	for _, c := range p {
		if b.cr {
			b.cr = false
			if c != '\n' {
				return errBareCR
			}
			if err := b.endLine(); err != nil {
				return err
			}
			continue
		}
		switch c {
		case '\r':
			b.cr = true
			continue
		case '\n':
			if err := b.endLine(); err != nil {
				return err
			}
		default:
			if !b.inHeader {
				b.out = append(b.out, c)
				break
			}
			if b.atLineStart && c != ' ' && c != '\t' {
				// A new field begins: the previous one is whole.
				if err := b.endField(); err != nil {
					return err
				}
			}
			b.atLineStart = false
			b.headerByte(c)
		}
		if len(b.out) >= cap(b.out)-2 {
			if err := b.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// headerByte adds one byte of a header field.
func (b *bodyCopier) headerByte(c byte) {
	if b.spilled {
		b.out = append(b.out, c)
		return
	}
	b.field = append(b.field, c)
	if len(b.field) > maxFieldBuffer {
		// Too long to hold back: it is kept. A Received field is
		// counted now.
		b.countHop()
		b.out = append(b.out, b.field...)
		b.field, b.spilled = b.field[:0], true
	}
}

func (b *bodyCopier) endLine() error {
	if !b.inHeader {
		b.out = append(b.out, '\r', '\n')
		return nil
	}
	if b.atLineStart {
		// The empty line that ends the header section.
		if err := b.endField(); err != nil {
			return err
		}
		b.inHeader = false
		b.out = append(b.out, '\r', '\n')
		return nil
	}
	b.headerByte('\r')
	b.headerByte('\n')
	b.atLineStart = true
	return nil
}

// endField decides the field just read: kept (written) or dropped.
func (b *bodyCopier) endField() error {
	if b.spilled {
		b.spilled = false
		return b.hopError()
	}
	if len(b.field) == 0 {
		return nil
	}
	f := b.field
	b.field = b.field[:0]
	b.countHop0(f)
	if b.forged(f) {
		b.dropped++
		return b.hopError()
	}
	b.out = append(b.out, f...)
	return b.hopError()
}

func (b *bodyCopier) countHop() { b.countHop0(b.field) }
func (b *bodyCopier) countHop0(f []byte) {
	if len(f) >= len(receivedPrefix) && strings.EqualFold(string(f[:len(receivedPrefix)]), receivedPrefix) {
		b.hops++
	}
}

func (b *bodyCopier) hopError() error {
	if b.hops > maxHops {
		return errTooManyHops
	}
	return nil
}

// forged tells whether a header field claims to be mxgate's own verdict.
func (b *bodyCopier) forged(f []byte) bool {
	colon := bytes.IndexByte(f, ':')
	if colon <= 0 {
		return false
	}
	name := strings.TrimRight(string(f[:colon]), " \t")
	if len(name) >= 7 && strings.EqualFold(name[:7], "X-Spam-") {
		return true
	}
	if !strings.EqualFold(name, "Authentication-Results") || b.authserv == "" {
		return false
	}
	// The authserv-id is the value's first token (RFC 8601 §2.2),
	// possibly after comments and folding.
	v := strings.TrimLeft(string(f[colon+1:]), " \t\r\n")
	for strings.HasPrefix(v, "(") {
		end := strings.IndexByte(v, ')')
		if end < 0 {
			return false
		}
		v = strings.TrimLeft(v[end+1:], " \t\r\n")
	}
	id := v
	if i := strings.IndexAny(v, "; \t\r\n"); i >= 0 {
		id = v[:i]
	}
	return strings.EqualFold(id, b.authserv)
}

func (b *bodyCopier) flush() error {
	if len(b.out) == 0 {
		return nil
	}
	n, err := b.dst.Write(b.out)
	b.stored += int64(n)
	b.out = b.out[:0]
	if err != nil {
		return &spoolWriteError{err}
	}
	return nil
}

// deadlineReader gives each read of the message data its own deadline, so
// a slow but live client may take as long as it needs for a large message
// while a stalled one is dropped after the data timeout (RFC 5321
// §4.5.3.2.5: 3 minutes per data block at least).
type deadlineReader struct {
	r       io.Reader
	conn    net.Conn
	timeout time.Duration
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if d.conn != nil && d.timeout > 0 {
		_ = d.conn.SetReadDeadline(time.Now().Add(d.timeout))
	}
	return d.r.Read(p)
}

// receivedHeader builds the trace header (RFC 5321 §4.4, RFC 3848 protocol
// names) with the TLS details as a comment.
func receivedHeader(helo string, ip netip.Addr, hostname, queueID string, tlsState *tls.ConnectionState, rcpts []string, now time.Time) []byte {
	var b bytes.Buffer
	proto := "ESMTP"
	if tlsState != nil {
		proto = "ESMTPS"
	}
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (mxgate) with %s id %s", sanitizeHelo(helo), ip, hostname, proto, queueID)
	if tlsState != nil {
		fmt.Fprintf(&b, "\r\n\t(using %s with cipher %s)", strings.Replace(tls.VersionName(tlsState.Version), "TLS ", "TLSv", 1), tls.CipherSuiteName(tlsState.CipherSuite))
	}
	// Name the recipient only when there is one: listing several would
	// disclose Bcc recipients to each other.
	if len(rcpts) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", rcpts[0])
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", now.Format(time.RFC1123Z))
	return b.Bytes()
}

// sanitizeHelo keeps the client's HELO argument from breaking the header:
// it is hostile input, bounded and restricted to the characters of a
// domain or address literal.
func sanitizeHelo(s string) string {
	if len(s) > 255 {
		s = s[:255]
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '-', c == '_', c == ':', c == '[', c == ']':
			b.WriteByte(c)
		default:
			b.WriteByte('?')
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}
