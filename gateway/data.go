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
// It also counts Received headers in the header section to stop loops, and
// the bytes received, to enforce the size limit while streaming (BDAT
// chunks reach Data without go-smtp's DATA size check).
type bodyCopier struct {
	dst      io.Writer
	maxBytes int64

	n         int64 // bytes received
	stored    int64 // bytes written to dst: LF becomes CRLF, so it can grow
	cr        bool  // last byte was a CR, not yet written
	inHeader  bool
	lineStart bool
	line      []byte // the current header line's first bytes, for Received counting
	hops      int
	out       []byte
}

func newBodyCopier(dst io.Writer, maxBytes int64) *bodyCopier {
	return &bodyCopier{dst: dst, maxBytes: maxBytes, inHeader: true, lineStart: true, out: make([]byte, 0, 64<<10)}
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
			if b.maxBytes > 0 && b.stored+int64(len(b.out)) > b.maxBytes {
				return b.n, errTooLarge
			}
		}
		if rerr == io.EOF {
			if b.cr {
				return b.n, errBareCR
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
			b.endLine()
			continue
		}
		switch c {
		case '\r':
			b.cr = true
		case '\n':
			b.endLine()
		default:
			if b.inHeader {
				if b.lineStart && len(b.line) < len(receivedPrefix) {
					b.line = append(b.line, c)
					if len(b.line) == len(receivedPrefix) {
						if strings.EqualFold(string(b.line), receivedPrefix) {
							b.hops++
							if b.hops > maxHops {
								return errTooManyHops
							}
						}
						b.lineStart = false
					}
				} else {
					b.lineStart = false
				}
			}
			b.out = append(b.out, c)
		}
		if len(b.out) >= cap(b.out)-2 {
			if err := b.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *bodyCopier) endLine() {
	if b.inHeader && len(b.line) == 0 && b.lineStart {
		b.inHeader = false // the empty line that ends the header section
	}
	b.line = b.line[:0]
	b.lineStart = true
	b.out = append(b.out, '\r', '\n')
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
