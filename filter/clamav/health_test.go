package clamav

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/wait"
)

// TestClamdHealthLevels: what the clamd watcher logs for a sequence of
// ping results. A clamd that is not there yet at start is awaited at WARN,
// once; ERROR is for a clamd that answered and went away, or that has
// still not answered when the grace period ends; each change is logged
// once, never once per ping.
func TestClamdHealthLevels(t *testing.T) {
	const grace = 60 * time.Second
	down := errors.New("dial tcp 127.0.0.1:3310: connect: connection refused")
	type ping struct {
		at    time.Duration // since start
		err   error
		want  string // "" for no line, else "LEVEL event"
		state clamdState
	}
	cases := []struct {
		name  string
		pings []ping
	}{
		{"up from the start: nothing to say", []ping{
			{0, nil, "", clamdUp},
			{2 * time.Second, nil, "", clamdUp},
		}},
		{"clamd starts after the node: WARN once, then INFO", []ping{
			{0, down, "WARN clamd_waiting", clamdWaiting},
			{2 * time.Second, down, "", clamdWaiting},
			{4 * time.Second, down, "", clamdWaiting},
			{6 * time.Second, nil, "INFO clamd_up", clamdUp},
		}},
		{"never answers: WARN, then ERROR once when the grace period ends", []ping{
			{0, down, "WARN clamd_waiting", clamdWaiting},
			{58 * time.Second, down, "", clamdWaiting},
			{60 * time.Second, down, "ERROR clamd_down", clamdDown},
			{62 * time.Second, down, "", clamdDown},
			{90 * time.Second, nil, "INFO clamd_up", clamdUp},
		}},
		{"was up and went away, even within the grace period: ERROR", []ping{
			{0, nil, "", clamdUp},
			{2 * time.Second, down, "ERROR clamd_down", clamdDown},
			{4 * time.Second, down, "", clamdDown},
			{6 * time.Second, nil, "INFO clamd_up", clamdUp},
			{8 * time.Second, down, "ERROR clamd_down", clamdDown},
		}},
		{"first ping after the grace period fails: ERROR at once", []ping{
			{61 * time.Second, down, "ERROR clamd_down", clamdDown},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			h := clamdHealth{start: start, grace: grace}
			for i, p := range tc.pings {
				line, ok := h.observe(start.Add(p.at), p.err)
				got := ""
				if ok {
					got = line.level.String() + " " + line.event
				}
				if got != p.want {
					t.Errorf("ping %d (at %v, err %v): logged %q, want %q", i, p.at, p.err, got, p.want)
				}
				if h.state != p.state {
					t.Errorf("ping %d (at %v): state %d, want %d", i, p.at, h.state, p.state)
				}
				if ok && line.level == slog.LevelError && line.msg != "clamd unavailable" {
					t.Errorf("ping %d: ERROR message %q, want %q", i, line.msg, "clamd unavailable")
				}
			}
		})
	}
}

// lockedBuffer is a log destination the watcher goroutine writes while the
// test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestHealthWaitsForClamd: a node whose clamd is not there yet logs
// one WARN that it is waiting (no ERROR) and is not ready; when clamd
// answers, it logs that clamd is available and is ready.
func TestHealthWaitsForClamd(t *testing.T) {
	var up atomic.Bool
	client, err := New(Config{
		Address: "tcp:127.0.0.1:3310",
		Timeout: time.Second,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if !up.Load() {
				return nil, errors.New("connect: connection refused")
			}
			c, srv := net.Pipe()
			go func() { // a clamd that answers one PING
				defer srv.Close()
				if cmd, err := bufio.NewReader(srv).ReadString(0); err != nil || cmd != "zPING\x00" {
					return
				}
				_, _ = srv.Write([]byte("PONG\x00"))
			}()
			return c, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	srv := NewHealth(client, slog.New(slog.NewJSONHandler(&logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Watch(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()

	// The log says what the watcher did when a wait fails.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		wait.For(t, 10*time.Second, what, func() (bool, string) { return cond(), "log:\n" + logs.String() })
	}
	waitFor("clamd_waiting line", func() bool { return strings.Contains(logs.String(), `"event":"clamd_waiting"`) })
	if err := srv.Ready(); err == nil {
		t.Error("ScannerReady: nil while clamd does not answer, want an error")
	}
	up.Store(true)
	waitFor("clamd_up line", func() bool { return strings.Contains(logs.String(), `"event":"clamd_up"`) })
	if err := srv.Ready(); err != nil {
		t.Errorf("ScannerReady after clamd answered: %v", err)
	}
	out := logs.String()
	if n := strings.Count(out, `"event":"clamd_waiting"`); n != 1 {
		t.Errorf("%d clamd_waiting lines, want 1; log:\n%s", n, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(line, `"event":"clamd_waiting"`) && !strings.Contains(line, `"level":"WARN"`) {
			t.Errorf("clamd_waiting not at WARN: %s", line)
		}
		if strings.Contains(line, `"level":"ERROR"`) {
			t.Errorf("ERROR while waiting for clamd at start: %s", line)
		}
	}
}
