// Package gatewaytest runs a gateway in the test process: a gateway.Server
// listening on loopback with a real spool in a temporary directory, the
// checks a test gives it as its filter pipeline, and a recording backend
// (internal/smtptest) that the queue delivers to. Pipeline cases (a check
// that rejects, tempfails, tags, adds headers, panics or times out; a
// recipient decided at the end of DATA) are tested through real SMTP
// without the mxgate binary and without clamd.
//
// Checks that ask DNS get their resolver where the test builds them (the
// Mock of internal/dns); the queue's own lookups (MX routing beyond the
// backends) are set with Options.Queue.
package gatewaytest

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/gateway"
	"github.com/mxgate/mxgate/internal/logtest"
	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
	"github.com/mxgate/mxgate/smarthost"
)

// Defaults of the harness: the relay domain, the gateway's hostname, and
// mynetworks (loopback is not in it: the test client is a stranger).
const (
	Domain   = "example.test"
	Hostname = "mx.gatewaytest.test"
	Listener = gateway.ListenerInbound
)

// Options are what a test varies.
type Options struct {
	// Checks is the inbound listener's pipeline (filter.New); the zero
	// value runs no checks.
	Checks filter.Config
	// Config adjusts the gateway's configuration after the harness's
	// defaults (limits, timeouts, mynetworks).
	Config func(*gateway.Config)
	// Queue adjusts the spool's configuration: retries, or the resolver
	// for routing beyond the backend.
	Queue func(*smarthost.Config)
	// LongRun keeps only the ERROR lines of the mail log (a recovered
	// panic among them) and none of the delivered messages: for fuzzing,
	// whose sessions are countless.
	LongRun bool
}

// Gateway is a running gateway with its spool and its backend.
type Gateway struct {
	Addr     string // the inbound listener, "127.0.0.1:port"
	Server   *gateway.Server
	Queue    *smarthost.Queue
	Backend  *smtptest.Server // where the queue delivers
	SpoolDir string

	log *logtest.Buffer
}

// Start runs a gateway for the test; it is shut down when the test ends.
func Start(t testing.TB, o Options) *Gateway {
	t.Helper()
	logs := &logtest.Buffer{}
	level := slog.LevelInfo
	if o.LongRun {
		level = slog.LevelError
	}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: level}))
	backend := smtptest.StartConfig(t, smtptest.Config{Forget: o.LongRun})
	g := &Gateway{Backend: backend, SpoolDir: filepath.Join(t.TempDir(), "spool"), log: logs}

	qcfg := smarthost.Config{
		Dir:            g.SpoolDir,
		Hostname:       Hostname,
		LocalDomains:   []string{Domain},
		Backends:       []string{backend.Addr()},
		RetryMin:       time.Second,
		RetryMax:       2 * time.Second,
		Logger:         logger,
		BackendDownMin: 50 * time.Millisecond,
		BackendDownMax: 200 * time.Millisecond,
	}
	if o.Queue != nil {
		o.Queue(&qcfg)
	}
	q, err := smarthost.Open(qcfg)
	if err != nil {
		t.Fatalf("gatewaytest: open the spool: %v", err)
	}
	g.Queue = q
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { _ = q.Run(ctx); close(ran) }()

	cfg := gateway.Config{
		Hostname:         Hostname,
		Domains:          []string{Domain},
		MyNetworks:       []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		MaxMessageBytes:  1 << 20,
		MaxRecipients:    10,
		MaxConnections:   100,
		PerIPConnections: 100,
		CommandTimeout:   30 * time.Second,
		DataTimeout:      30 * time.Second,
		HardErrorLimit:   20,
		JunkCommandLimit: 100,
		Logger:           logger,
	}
	if o.Config != nil {
		o.Config(&cfg)
	}
	checks := o.Checks
	if checks.Logger == nil {
		checks.Logger = logger
	}
	srv := gateway.New(cfg, q)
	if err := srv.Listen(gateway.Policy{Name: Listener, Relay: gateway.RelayTrusted, Pipeline: filter.New(checks)}, "127.0.0.1:0"); err != nil {
		cancel()
		<-ran
		_ = q.Close()
		t.Fatalf("gatewaytest: listen: %v", err)
	}
	g.Server, g.Addr = srv, srv.Addrs()[0].String()
	served := make(chan struct{})
	go func() { _ = srv.Serve(); close(served) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		<-served
		cancel()
		<-ran
		_ = q.Close()
		if t.Failed() {
			t.Logf("gatewaytest: mail log:\n%s", logs.String())
		}
	})
	// Sessions are refused until the runner is up.
	wait.For(t, 10*time.Second, "the queue runner to start", q.Ready)
	return g
}

// SpoolFiles lists the files in the spool, relative to it: a message
// refused at the end of DATA leaves none behind.
func (g *Gateway) SpoolFiles(t testing.TB) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(g.SpoolDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(g.SpoolDir, path)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("gatewaytest: list the spool: %v", err)
	}
	return out
}

// Events returns the mail-log lines with every given key=value (values
// compared as fmt.Sprint prints them).
func (g *Gateway) Events(kv ...string) []map[string]any {
	return logtest.Find(logtest.Parse(g.log.Bytes()), kv...)
}

// Counter returns the value of a counter or gauge of the process's default
// registry with exactly these label pairs, 0 when there is no such sample.
// Metrics are process-wide: compare a value before and after.
func Counter(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatalf("gatewaytest: gather metrics: %v", err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(want) {
				continue
			}
			match := true
			for _, lp := range m.GetLabel() {
				if v, ok := want[lp.GetName()]; !ok || v != lp.GetValue() {
					match = false
					break
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// MessagesTotal is mxgate_messages_total of the harness's listener.
func MessagesTotal(t testing.TB, outcome, reason string) float64 {
	t.Helper()
	return Counter(t, "mxgate_messages_total", "listener", Listener, "outcome", outcome, "reason", reason)
}

// AddedHeaders returns the header fields the gateway put above the
// client's bytes in a delivered message (its Received header first), given
// the client's first header line; ok is false when that line is not found.
func AddedHeaders(data []byte, clientFirstLine string) (fields []string, ok bool) {
	i := bytes.Index(data, []byte("\r\n"+clientFirstLine+"\r\n"))
	if i < 0 {
		return nil, false
	}
	for _, line := range strings.Split(string(data[:i]), "\r\n") {
		if line != "" && (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1] += "\r\n" + line
			continue
		}
		fields = append(fields, line)
	}
	return fields, true
}

// Names returns the field names of header fields, in order.
func Names(fields []string) []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i], _, _ = strings.Cut(f, ":")
	}
	return out
}

// Check is a test check made of functions: a test puts it in the stages
// of filter.Config whose function it sets.
type Check struct {
	Label  string
	Conn   func(context.Context, *filter.Conn) filter.Result
	Sender func(context.Context, *filter.Sender) filter.Result
	Rcpt   func(context.Context, *filter.Recipient) filter.Result
	Body   func(context.Context, *filter.Body) filter.Result
}

func (c Check) Name() string { return c.Label }

func (c Check) CheckConn(ctx context.Context, x *filter.Conn) filter.Result { return c.Conn(ctx, x) }

func (c Check) CheckSender(ctx context.Context, x *filter.Sender) filter.Result {
	return c.Sender(ctx, x)
}

func (c Check) CheckRcpt(ctx context.Context, x *filter.Recipient) filter.Result {
	return c.Rcpt(ctx, x)
}

func (c Check) CheckBody(ctx context.Context, x *filter.Body) filter.Result { return c.Body(ctx, x) }
