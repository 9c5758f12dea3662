package smarthost

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// sinkMsg is a message received by a test SMTP server.
type sinkMsg struct {
	from  string
	rcpts []string
	data  []byte
}

// sink is an in-test SMTP server standing in for a backend or a remote MX.
type sink struct {
	addr  string
	conns atomic.Int64
	// down makes the server answer 451 to EHLO, like an overloaded backend.
	down atomic.Bool
	// rcptErr decides the RCPT reply; nil accepts.
	rcptErr func(to string) error
	// held counts messages whose final reply waits for hold (see holdData).
	held atomic.Int64

	mu   sync.Mutex
	msgs []sinkMsg
	got  chan struct{} // signalled on each message
	hold chan struct{}
}

// holdData makes the sink read each message it receives from now on, then
// keep its reply back until the returned release is called: the delivery
// stays in flight. Released messages are not recorded and get no reply
// (their connections are expected to be cut meanwhile).
func (s *sink) holdData(t *testing.T) (release func()) {
	t.Helper()
	hold := make(chan struct{})
	s.mu.Lock()
	s.hold = hold
	s.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			s.mu.Lock()
			s.hold = nil
			s.mu.Unlock()
			close(hold)
		})
	}
	t.Cleanup(release)
	return release
}

func newSink(t *testing.T) *sink {
	t.Helper()
	s := &sink{got: make(chan struct{}, 10000)}
	srv := smtp.NewServer(sinkBackend{s})
	srv.Domain = "sink.test"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

func (s *sink) messages() []sinkMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkMsg(nil), s.msgs...)
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// rcptCount counts deliveries to one recipient.
func (s *sink) rcptCount(rcpt string) int {
	n := 0
	for _, m := range s.messages() {
		for _, r := range m.rcpts {
			if r == rcpt {
				n++
			}
		}
	}
	return n
}

type sinkBackend struct{ s *sink }

func (b sinkBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	if b.s.down.Load() {
		return nil, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "down for maintenance"}
	}
	b.s.conns.Add(1)
	return &sinkSession{s: b.s}, nil
}

type sinkSession struct {
	s     *sink
	from  string
	rcpts []string
}

func (ss *sinkSession) Reset()        { ss.from, ss.rcpts = "", nil }
func (ss *sinkSession) Logout() error { return nil }
func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.s.rcptErr != nil {
		if err := ss.s.rcptErr(to); err != nil {
			return err
		}
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	if hold := ss.s.hold; hold != nil {
		ss.s.mu.Unlock()
		ss.s.held.Add(1)
		<-hold
		ss.s.held.Add(-1)
		return errors.New("held message dropped")
	}
	ss.s.msgs = append(ss.s.msgs, sinkMsg{from: ss.from, rcpts: ss.rcpts, data: data})
	ss.s.mu.Unlock()
	ss.s.got <- struct{}{}
	return nil
}

// logBuffer collects the mail log for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// cutDialer is a Config.Dialer whose connections the test can cut all at
// once, like a backend that goes away: cut closes every connection and
// refuses new ones until restore.
type cutDialer struct {
	mu    sync.Mutex
	down  bool
	conns []net.Conn
}

func (d *cutDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused (cut)")}
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.conns = append(d.conns, c)
	return c, nil
}

func (d *cutDialer) cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.down = true
	for _, c := range d.conns {
		_ = c.Close()
	}
	d.conns = nil
}

func (d *cutDialer) restore() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.down = false
}

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// testConfig returns a configuration for a queue in a fresh directory.
func testConfig(t *testing.T, backends ...*sink) Config {
	t.Helper()
	cfg := Config{
		Dir:            t.TempDir(),
		Hostname:       "mx1.test",
		LocalDomains:   []string{"example.com"},
		RetryMin:       time.Hour,
		RetryMax:       2 * time.Hour,
		Workers:        4,
		Logger:         slog.New(slog.NewJSONHandler(io.Discard, nil)),
		BackendDownMin: 50 * time.Millisecond,
		BackendDownMax: 200 * time.Millisecond,
		DNS:            failingDNS{},
	}
	for _, b := range backends {
		cfg.Backends = append(cfg.Backends, b.addr)
	}
	return cfg
}

// failingDNS makes any MX lookup fail: tests route through backends and
// transports only, unless they install a fakeDNS.
type failingDNS struct{}

func (failingDNS) LookupMX(context.Context, string) ([]*net.MX, error) {
	return nil, errors.New("no DNS in tests")
}
func (failingDNS) LookupAddr(context.Context, string) ([]netip.Addr, error) {
	return nil, errors.New("no DNS in tests")
}

func openQueue(t *testing.T, cfg Config) *Queue {
	t.Helper()
	q, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

// runQueue starts the runner and returns a function that stops it and
// waits for it; it is also registered as a cleanup.
func runQueue(t *testing.T, q *Queue) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	waitFor(t, "runner ready", q.Ready)
	return stop
}

// submit spools a message like the gateway does.
func submit(t *testing.T, q *Queue, from string, rcpts []string, subject string) string {
	t.Helper()
	d, err := q.NewDraft()
	if err != nil {
		t.Fatalf("NewDraft: %v", err)
	}
	body := "Received: from client by mx1.test with ESMTP id " + d.ID() + "\r\n" +
		"From: <" + from + ">\r\nTo: <" + strings.Join(rcpts, ">, <") + ">\r\nSubject: " + subject + "\r\n\r\n" +
		"Hello.\r\n.leading dot\r\n"
	if _, err := d.Write([]byte(body)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := q.Commit(d, Envelope{From: from, Rcpts: rcpts, Listener: "inbound", ClientIP: "192.0.2.1", Helo: "client"}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return d.ID()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
