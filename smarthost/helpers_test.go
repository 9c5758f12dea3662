package smarthost

import (
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

	"github.com/mxgate/mxgate/internal/dns"
	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

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

// waitTimeout bounds every wait of these tests.
const waitTimeout = 15 * time.Second

// testConfig returns a configuration for a queue in a fresh directory.
func testConfig(t *testing.T, backends ...*smtptest.Server) Config {
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
		Resolver:       failingDNS{},
	}
	for _, b := range backends {
		cfg.Backends = append(cfg.Backends, b.Addr())
	}
	return cfg
}

// failingDNS makes any MX or address lookup fail: tests route through
// backends and transports only, unless they install a dns.Mock.
type failingDNS struct{ dns.Mock }

func (failingDNS) MX(context.Context, string) ([]dns.MX, dns.Result, error) {
	return nil, dns.Result{}, errors.New("no DNS in tests")
}
func (failingDNS) IP(context.Context, string) ([]netip.Addr, dns.Result, error) {
	return nil, dns.Result{}, errors.New("no DNS in tests")
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
	wait.For(t, waitTimeout, "runner ready", q.Ready)
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
