package gateway

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/mxgate/mxgate/internal/dns"
	"github.com/mxgate/mxgate/smarthost"
)

// startTestServer runs an inbound listener on loopback with a real spool
// (backends unreachable: mail stays queued) and returns its address.
func startTestServer(t testing.TB) string {
	t.Helper()
	q, err := smarthost.Open(smarthost.Config{
		Dir:          t.TempDir(),
		Hostname:     "mx.fuzz.test",
		LocalDomains: []string{"fuzz.test"},
		Backends:     []string{"127.0.0.1:1"},
		Resolver:     dns.Mock{},
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = q.Run(ctx); close(done) }()
	srv := New(Config{
		Hostname:         "mx.fuzz.test",
		Domains:          []string{"fuzz.test"},
		MyNetworks:       []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		MaxMessageBytes:  64 << 10,
		MaxRecipients:    5,
		MaxConnections:   100,
		PerIPConnections: 100,
		// Short: an input that leaves DATA or BDAT open is ended by
		// the server's timeout, which is part of what is tested.
		CommandTimeout: time.Second,
		DataTimeout:    time.Second,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, q)
	if err := srv.Listen(Policy{Name: ListenerInbound}, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve() }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		cancel()
		<-done
		_ = q.Close()
	})
	return srv.Addrs()[0].String()
}

// FuzzSession throws arbitrary client bytes at a real session: whatever
// arrives, the server must not panic, must answer with well-formed
// replies, and must still serve the next client.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"EHLO a\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@fuzz.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO a\r\nMAIL FROM:<>\r\nRCPT TO:<u@other.example>\r\nRCPT TO:<postmaster>\r\nQUIT\r\n",
		"HELO a\r\nMAIL FROM:<a@b> SIZE=99999999999\r\nQUIT\r\n",
		"EHLO a\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@fuzz.test>\r\nDATA\r\nx\n.\nMAIL FROM:<e@x>\r\n.\r\n",
		"EHLO a\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@fuzz.test>\r\nDATA\r\nx\r.\r\n.\r\n",
		"EHLO a\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@fuzz.test>\r\nBDAT 5 LAST\r\nhello",
		"EHLO a\r\nSTARTTLS\r\n\x16\x03\x01garbage",
		"\x00\xff\r\n\r\n\r\nRSET\r\nNOOP\r\nVRFY x\r\n",
	} {
		f.Add(seed)
	}
	addr := startTestServer(f)
	before := panics(f)
	f.Fuzz(func(t *testing.T, input string) {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			_, _ = io.WriteString(conn, input)
			_, _ = io.WriteString(conn, "\n\r\n.\r\nQUIT\r\n")
		}()
		r := bufio.NewReader(conn)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break // closed after QUIT, or after a fatal error reply
			}
			if len(line) < 4 || line[0] < '2' || line[0] > '5' || (line[3] != ' ' && line[3] != '-') || !strings.HasSuffix(line, "\r\n") {
				t.Fatalf("malformed reply line %q", line)
			}
		}
		if got := panics(t); got != before {
			t.Fatalf("session panicked (mxgate_gateway_panics_total %v -> %v)", before, got)
		}
	})
}

func panics(t testing.TB) float64 {
	t.Helper()
	var m dto.Metric
	if err := metricPanics.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
