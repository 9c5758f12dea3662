package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ioTimeout bounds every read and write of the raw client.
const ioTimeout = 30 * time.Second

// smtpReply is one (possibly multi-line) SMTP reply.
type smtpReply struct {
	code  int
	lines []string // as received, without CRLF
}

func (r smtpReply) String() string { return strings.Join(r.lines, " | ") }

// is reports whether the reply has the given code and, if want has a
// second word, that enhanced status code: is("554 5.7.1"), is("354").
func (r smtpReply) is(want string) bool {
	if len(r.lines) == 0 {
		return false
	}
	first := r.lines[0]
	if len(first) > 3 && first[3] == '-' {
		first = first[:3] + " " + first[4:]
	}
	return first == want || strings.HasPrefix(first, want+" ")
}

// rawSMTP is a minimal SMTP client on a net.Conn, for tests where the exact
// bytes on the wire and the exact replies matter.
type rawSMTP struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialSMTP(addr string) (*rawSMTP, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return newRawSMTP(c), nil
}

func newRawSMTP(c net.Conn) *rawSMTP {
	return &rawSMTP{conn: c, r: bufio.NewReaderSize(c, 64<<10)}
}

func (c *rawSMTP) close() { _ = c.conn.Close() }

// readReply reads one whole reply (every continuation line).
func (c *rawSMTP) readReply() (smtpReply, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	var rep smtpReply
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			if len(rep.lines) > 0 || line != "" {
				return rep, fmt.Errorf("reply cut off after %q: %w", append(rep.lines, line), err)
			}
			return rep, err
		}
		if !strings.HasSuffix(line, "\r\n") {
			return rep, fmt.Errorf("reply line %q does not end with CRLF", line)
		}
		line = strings.TrimSuffix(line, "\r\n")
		if len(line) < 3 {
			return rep, fmt.Errorf("malformed reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return rep, fmt.Errorf("malformed reply line %q", line)
		}
		if rep.code != 0 && code != rep.code {
			return rep, fmt.Errorf("reply code changes within a reply: %q then %q", rep.lines, line)
		}
		rep.code = code
		rep.lines = append(rep.lines, line)
		if len(line) == 3 || line[3] == ' ' {
			return rep, nil
		}
		if line[3] != '-' {
			return rep, fmt.Errorf("malformed reply line %q", line)
		}
	}
}

// write sends raw bytes.
func (c *rawSMTP) write(p []byte) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := c.conn.Write(p)
	return err
}

// cmd sends one command line (CRLF added) and reads its reply.
func (c *rawSMTP) cmd(line string) (smtpReply, error) {
	if err := c.write([]byte(line + "\r\n")); err != nil {
		return smtpReply{}, err
	}
	return c.readReply()
}

// expectCmd is cmd that fails the test unless the reply is want.
func (c *rawSMTP) expectCmd(t testing.TB, line, want string) smtpReply {
	t.Helper()
	rep, err := c.cmd(line)
	if err != nil {
		t.Fatalf("e2e: %q: %v", line, err)
	}
	if !rep.is(want) {
		t.Fatalf("e2e: %q: got %q, want %q", line, rep, want)
	}
	return rep
}

// expectReply reads a reply (the greeting, the end of DATA) and fails the
// test unless it is want.
func (c *rawSMTP) expectReply(t testing.TB, what, want string) smtpReply {
	t.Helper()
	rep, err := c.readReply()
	if err != nil {
		t.Fatalf("e2e: %s: %v", what, err)
	}
	if !rep.is(want) {
		t.Fatalf("e2e: %s: got %q, want %q", what, rep, want)
	}
	return rep
}

// hello reads the greeting and sends EHLO, expecting both to succeed.
func (c *rawSMTP) hello() (smtpReply, error) {
	g, err := c.readReply()
	if err != nil {
		return g, fmt.Errorf("greeting: %w", err)
	}
	if g.code != 220 {
		return g, fmt.Errorf("greeting: %q", g)
	}
	rep, err := c.cmd("EHLO client.e2e.test")
	if err != nil {
		return rep, fmt.Errorf("EHLO: %w", err)
	}
	if rep.code != 250 {
		return rep, fmt.Errorf("EHLO: %q", rep)
	}
	return rep, nil
}

// sendMessage runs one transaction: MAIL, RCPT for each recipient, DATA and
// the dot-stuffed data. It returns the reply to the end of data; an error
// when a command before it was not accepted or the connection failed.
func (c *rawSMTP) sendMessage(from string, rcpts []string, data []byte) (smtpReply, error) {
	if rep, err := c.cmd("MAIL FROM:<" + from + ">"); err != nil {
		return rep, err
	} else if rep.code != 250 {
		return rep, fmt.Errorf("MAIL: %q", rep)
	}
	for _, r := range rcpts {
		if rep, err := c.cmd("RCPT TO:<" + r + ">"); err != nil {
			return rep, err
		} else if rep.code != 250 {
			return rep, fmt.Errorf("RCPT %s: %q", r, rep)
		}
	}
	if rep, err := c.cmd("DATA"); err != nil {
		return rep, err
	} else if rep.code != 354 {
		return rep, fmt.Errorf("DATA: %q", rep)
	}
	if err := c.write(append(dotStuff(data), ".\r\n"...)); err != nil {
		return smtpReply{}, err
	}
	return c.readReply()
}

// readAll reads replies until the server closes the connection.
func (c *rawSMTP) readAll() ([]smtpReply, error) {
	var out []smtpReply
	for {
		rep, err := c.readReply()
		if errors.Is(err, io.EOF) && len(rep.lines) == 0 {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rep)
	}
}

// dotStuff applies RFC 5321 §4.5.2 transparency to a message whose lines
// end with CRLF (a missing final CRLF is added).
func dotStuff(data []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(data) + 64)
	atLineStart := true
	for i := 0; i < len(data); i++ {
		if atLineStart && data[i] == '.' {
			b.WriteByte('.')
		}
		b.WriteByte(data[i])
		atLineStart = data[i] == '\n' && i > 0 && data[i-1] == '\r'
	}
	if !bytes.HasSuffix(data, []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// queueIDOf returns the id from "250 2.0.0 Ok: queued as ID".
func queueIDOf(rep smtpReply) (string, bool) {
	if !rep.is("250 2.0.0") || len(rep.lines) != 1 {
		return "", false
	}
	rest, ok := strings.CutPrefix(rep.lines[0], "250 2.0.0 Ok: queued as ")
	if !ok || rest == "" || strings.ContainsAny(rest, " \t") {
		return "", false
	}
	return rest, true
}
