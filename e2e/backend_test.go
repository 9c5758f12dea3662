package e2e

import (
	"bytes"
	"errors"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// delivery is one SMTP transaction a backend accepted.
type delivery struct {
	from  string
	rcpts []string
	data  []byte
	at    time.Time
}

// backend is a go-smtp server in the test process standing in for a
// mailbox server (or a transport next hop): it records every message it
// accepts and can be told to refuse recipients, or be stopped and started
// again on the same port.
type backend struct {
	t    testing.TB
	addr string

	mu       sync.Mutex
	srv      *smtp.Server
	ln       net.Listener
	got      []delivery
	rcptErrs map[string]*smtp.SMTPError // lower-case address -> reply
	// hold, when set, keeps each message's final reply back until it is
	// closed (see holdData); held counts the messages waiting on it.
	hold chan struct{}
	held int
}

// startBackend listens on a fresh 127.0.0.1 port.
func startBackend(t testing.TB) *backend {
	t.Helper()
	b := &backend{t: t, rcptErrs: map[string]*smtp.SMTPError{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("e2e: backend listen: %v", err)
	}
	b.addr = ln.Addr().String()
	b.serve(ln)
	t.Cleanup(b.stop)
	return b
}

func (b *backend) serve(ln net.Listener) {
	var srv *smtp.Server
	srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &backendSession{b: b, srv: srv}, nil
	}))
	srv.Domain = "backend.e2e.test"
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.MaxLineLength = 4000
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = log.New(io.Discard, "", 0)
	b.mu.Lock()
	b.srv, b.ln = srv, ln
	b.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// stop closes the listener and every connection: the port refuses
// connections until start.
func (b *backend) stop() {
	b.mu.Lock()
	srv, ln := b.srv, b.ln
	b.srv, b.ln = nil, nil
	b.mu.Unlock()
	// The listener is closed here too: Close may run before Serve has
	// registered it with the server.
	if ln != nil {
		_ = ln.Close()
	}
	if srv != nil {
		_ = srv.Close()
	}
}

// start listens again on the same address.
func (b *backend) start() {
	b.t.Helper()
	var ln net.Listener
	waitFor(b.t, 10*time.Second, "backend port "+b.addr+" to bind again", func() (bool, string) {
		var err error
		ln, err = net.Listen("tcp", b.addr)
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	b.serve(ln)
}

// holdData makes the backend read each message it receives from now on and
// then keep its reply to the final dot back until releaseHeld: the client
// waits with its delivery in flight. A held message is recorded only if the
// backend was not stopped meanwhile (its client then saw the connection
// drop, not a 250).
func (b *backend) holdData() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hold = make(chan struct{})
}

// heldCount returns the number of messages waiting for releaseHeld.
func (b *backend) heldCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held
}

// releaseHeld lets the held messages finish and stops holding new ones.
func (b *backend) releaseHeld() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.hold != nil {
		close(b.hold)
		b.hold = nil
	}
}

// rejectRcpt makes RCPT TO:<addr> answer e.
func (b *backend) rejectRcpt(addr string, e *smtp.SMTPError) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rcptErrs[strings.ToLower(addr)] = e
}

func (b *backend) deliveries() []delivery {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]delivery(nil), b.got...)
}

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.got)
}

// byMessageID returns how many times each Message-ID arrived.
func (b *backend) byMessageID() map[string]int {
	out := map[string]int{}
	for _, d := range b.deliveries() {
		out[headerValue(d.data, "Message-ID")]++
	}
	return out
}

type backendSession struct {
	b     *backend
	srv   *smtp.Server // the server instance that accepted the session
	from  string
	rcpts []string
}

func (s *backendSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *backendSession) Logout() error { return nil }

func (s *backendSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from, s.rcpts = from, nil
	return nil
}

func (s *backendSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.b.mu.Lock()
	e := s.b.rcptErrs[strings.ToLower(to)]
	s.b.mu.Unlock()
	if e != nil {
		return e
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *backendSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		// Cut off mid-message (the node died): not delivered.
		return err
	}
	s.b.mu.Lock()
	if hold := s.b.hold; hold != nil {
		s.b.held++
		s.b.mu.Unlock()
		<-hold
		s.b.mu.Lock()
		s.b.held--
		if s.b.srv != s.srv {
			// Stopped while held: the client saw the connection drop.
			s.b.mu.Unlock()
			return errors.New("backend stopped before the reply")
		}
	}
	s.b.got = append(s.b.got, delivery{from: s.from, rcpts: append([]string(nil), s.rcpts...), data: data, at: time.Now()})
	s.b.mu.Unlock()
	return nil
}

// addedHeaders are the header fields mxgate may add above the message as
// the client sent it, besides its Received header: the virus scanner's
// verdict (README, "Virus scanning").
var addedHeaders = map[string]bool{"x-virus-scanned": true}

// splitReceived separates what mxgate adds at the top of a delivered
// message (its Received header, folded with continuation lines starting
// with a tab or space, and the fields in addedHeaders) from the rest, which
// must be the message as the client sent it. ok is false if the added
// block holds no Received header starting "Received: from ".
func splitReceived(data []byte) (received, rest []byte, ok bool) {
	pos := 0
	for pos < len(data) {
		// One header field: its first line and continuation lines.
		end := bytes.Index(data[pos:], []byte("\r\n"))
		if end < 0 {
			break
		}
		end += pos + 2
		for end < len(data) && (data[end] == '\t' || data[end] == ' ') {
			j := bytes.Index(data[end:], []byte("\r\n"))
			if j < 0 {
				return nil, data, false
			}
			end += j + 2
		}
		field := data[pos:end]
		name, _, _ := bytes.Cut(field, []byte(":"))
		switch {
		case pos == 0 && !bytes.HasPrefix(field, []byte("Received: from ")):
			// mxgate's trace header comes first (RFC 5321 §4.4).
			return nil, data, false
		case received == nil && bytes.HasPrefix(field, []byte("Received: from ")):
			received = field
		case addedHeaders[strings.ToLower(string(name))]:
		default:
			return received, data[pos:], received != nil
		}
		pos = end
	}
	return received, data[pos:], received != nil
}

// headerValue returns the first header field named name (unfolded,
// trimmed) from the header section of a message, "" if absent.
func headerValue(data []byte, name string) string {
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(data)
	}
	lines := strings.Split(string(data[:end]), "\r\n")
	for i := 0; i < len(lines); i++ {
		k, v, ok := strings.Cut(lines[i], ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), name) {
			continue
		}
		for i+1 < len(lines) && len(lines[i+1]) > 0 && (lines[i+1][0] == ' ' || lines[i+1][0] == '\t') {
			i++
			v += " " + strings.TrimSpace(lines[i])
		}
		return strings.TrimSpace(v)
	}
	return ""
}
