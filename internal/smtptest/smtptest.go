// Package smtptest is a recording SMTP server on loopback: the stand-in
// for a backend mailbox server or a remote MX in the unit tests, the
// end-to-end tests and `make run` (deployments/devsink). It accepts every
// message and keeps it (envelope, bytes and time), and a test can make it
// refuse recipients, answer 451 to new sessions, hold its replies to the
// final dot, or stop and start again on the same port.
package smtptest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/wait"
)

// Delivery is one message the server accepted.
type Delivery struct {
	From  string
	Rcpts []string
	Data  []byte // as received, dot-unstuffed
	At    time.Time
}

// Header returns the first header field named name of the message, as
// HeaderValue does.
func (d Delivery) Header(name string) string { return HeaderValue(d.Data, name) }

// Config is how the server starts; the zero value is a test backend on a
// free 127.0.0.1 port.
type Config struct {
	Addr   string // "" : 127.0.0.1:0
	Domain string // greeting and EHLO name; "" : smtptest.localhost
	// MaxMessageBytes is the SIZE limit; 0: none.
	MaxMessageBytes int64
	// Timeout bounds each read and write; 0: one minute.
	Timeout time.Duration
	// OnMessage, when set, sees each message before it is recorded; an
	// error is the reply to the final dot, and the message is not
	// recorded.
	OnMessage func(Delivery) error
	// Forget keeps no deliveries (a long-running server that hands them
	// to OnMessage only); Count still counts them.
	Forget bool
	// ErrorLog receives go-smtp's connection errors; nil discards them.
	ErrorLog *log.Logger
}

// Server is a running recording SMTP server.
type Server struct {
	cfg  Config
	addr string

	mu       sync.Mutex
	srv      *smtp.Server
	ln       net.Listener
	got      []Delivery
	count    int
	sessions int
	down     bool
	rcptErrs map[string]*smtp.SMTPError // lower-case address -> reply
	onRcpt   func(rcpt string) error
	hold     *gate
	held     int
}

// gate is one HoldData period: the held messages wait for open to close,
// and keep says whether they are then recorded.
type gate struct {
	open chan struct{}
	keep bool
}

// New listens on cfg.Addr and serves until Close.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Domain == "" {
		cfg.Domain = "smtptest.localhost"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Minute
	}
	if cfg.ErrorLog == nil {
		cfg.ErrorLog = log.New(io.Discard, "", 0)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, addr: ln.Addr().String(), rcptErrs: map[string]*smtp.SMTPError{}}
	s.serve(ln)
	return s, nil
}

// Start runs a server for the test on a free 127.0.0.1 port and closes it
// when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartConfig(t, Config{})
}

// StartConfig is Start with a configuration.
func StartConfig(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Addr is the "host:port" the server listens on, the same after a Start.
func (s *Server) Addr() string { return s.addr }

func (s *Server) serve(ln net.Listener) {
	var srv *smtp.Server
	srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.down {
			return nil, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "down for maintenance"}
		}
		s.sessions++
		return &session{s: s, srv: srv}, nil
	}))
	srv.Domain = s.cfg.Domain
	srv.MaxMessageBytes = s.cfg.MaxMessageBytes
	srv.ReadTimeout = s.cfg.Timeout
	srv.WriteTimeout = s.cfg.Timeout
	srv.MaxLineLength = 4000
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = s.cfg.ErrorLog
	s.mu.Lock()
	s.srv, s.ln = srv, ln
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// Stop closes the listener and every connection: the port refuses
// connections until Start.
func (s *Server) Stop() {
	s.mu.Lock()
	srv, ln := s.srv, s.ln
	s.srv, s.ln = nil, nil
	s.mu.Unlock()
	// The listener is closed here too: Close may run before Serve has
	// registered it with the server.
	if ln != nil {
		_ = ln.Close()
	}
	if srv != nil {
		_ = srv.Close()
	}
}

// Start listens again on the same address, retrying for up to ten
// seconds while the port is still taken.
func (s *Server) Start() error {
	var ln net.Listener
	err := wait.Until(10*time.Second, func() (bool, string) {
		var err error
		ln, err = net.Listen("tcp", s.addr)
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	if err != nil {
		return fmt.Errorf("smtptest: listen again on %s: %w", s.addr, err)
	}
	s.serve(ln)
	return nil
}

// Close stops the server for good; messages held by HoldData are dropped.
func (s *Server) Close() {
	s.DropHeld()
	s.Stop()
}

// SetDown makes new sessions get 451 4.3.0 at EHLO (an overloaded or
// maintained backend), or serves them again.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// RejectRcpt makes RCPT TO:<addr> (any case) answer e.
func (s *Server) RejectRcpt(addr string, e *smtp.SMTPError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcptErrs[strings.ToLower(addr)] = e
}

// OnRcpt makes fn decide the recipients RejectRcpt does not: its error is
// the reply to RCPT; nil accepts.
func (s *Server) OnRcpt(fn func(rcpt string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onRcpt = fn
}

// HoldData makes the server read each message it receives from now on and
// then keep its reply to the final dot back until ReleaseHeld or DropHeld:
// the client waits with its delivery in flight.
func (s *Server) HoldData() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = &gate{open: make(chan struct{})}
}

// Held returns the number of messages waiting for ReleaseHeld or DropHeld.
func (s *Server) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// ReleaseHeld answers the held messages and stops holding new ones. A held
// message is recorded and answered 250, unless the server was stopped
// meanwhile: its client then saw the connection drop, not a 250.
func (s *Server) ReleaseHeld() { s.release(true) }

// DropHeld ends the holding like ReleaseHeld, but records none of the held
// messages: for a test that has cut their connections on the client's side.
func (s *Server) DropHeld() { s.release(false) }

func (s *Server) release(keep bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hold != nil {
		s.hold.keep = keep
		close(s.hold.open)
		s.hold = nil
	}
}

// Deliveries returns the messages recorded so far, in the order of their
// final replies.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.got...)
}

// Count returns the number of messages accepted so far.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Sessions returns the number of sessions the server has opened.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// RcptCount counts the deliveries to one recipient.
func (s *Server) RcptCount(rcpt string) int {
	n := 0
	for _, d := range s.Deliveries() {
		for _, r := range d.Rcpts {
			if r == rcpt {
				n++
			}
		}
	}
	return n
}

// ByMessageID returns how many times each Message-ID arrived.
func (s *Server) ByMessageID() map[string]int {
	out := map[string]int{}
	for _, d := range s.Deliveries() {
		out[d.Header("Message-ID")]++
	}
	return out
}

type session struct {
	s     *Server
	srv   *smtp.Server // the server instance that accepted the session
	from  string
	rcpts []string
}

func (ss *session) Reset()        { ss.from, ss.rcpts = "", nil }
func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from, ss.rcpts = from, nil
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	e, fn := ss.s.rcptErrs[strings.ToLower(to)], ss.s.onRcpt
	ss.s.mu.Unlock()
	if e != nil {
		return e
	}
	if fn != nil {
		if err := fn(to); err != nil {
			return err
		}
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		// Cut off mid-message: not delivered.
		return err
	}
	s := ss.s
	s.mu.Lock()
	if g := s.hold; g != nil {
		s.held++
		s.mu.Unlock()
		<-g.open
		s.mu.Lock()
		s.held--
		switch {
		case !g.keep:
			s.mu.Unlock()
			return errors.New("smtptest: held message dropped")
		case s.srv != ss.srv:
			s.mu.Unlock()
			return errors.New("smtptest: stopped before the reply")
		}
	}
	s.mu.Unlock()
	d := Delivery{From: ss.from, Rcpts: append([]string(nil), ss.rcpts...), Data: data, At: time.Now()}
	if s.cfg.OnMessage != nil {
		if err := s.cfg.OnMessage(d); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count++
	if !s.cfg.Forget {
		s.got = append(s.got, d)
	}
	return nil
}

// HeaderValue returns the first header field named name (unfolded,
// trimmed) from the header section of a message, "" if absent.
func HeaderValue(msg []byte, name string) string {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	lines := strings.Split(string(msg[:end]), "\r\n")
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
