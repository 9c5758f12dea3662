package clamav

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mxgate/mxgate/filter"
)

func bodyOf(t *testing.T, content string) *filter.Body {
	t.Helper()
	path := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := filter.OpenMessage("Q1", path)
	if err != nil {
		t.Fatal(err)
	}
	return &filter.Body{Conn: &filter.Conn{ID: "s1"}, Msg: m}
}

// A clamd that answers FOUND for content holding "VIRUS", OK otherwise.
func verdictByContent(t *testing.T, conn net.Conn) {
	if cmd, err := readCommand(conn); err != nil || cmd != "zINSTREAM" {
		return
	}
	data, _, err := readStream(conn)
	if err != nil {
		return
	}
	if bytes.Contains(data, []byte("VIRUS")) {
		conn.Write([]byte("stream: Test.Virus FOUND\x00"))
		return
	}
	conn.Write([]byte("stream: OK\x00"))
}

func TestCheckVerdicts(t *testing.T) {
	f := newFakeTCP(t, verdictByContent)
	c := &Check{Client: newClient(t, Config{Address: f.address(), Timeout: 5 * time.Second}), Hostname: "mx.test", Logger: slog.New(slog.DiscardHandler)}
	r := c.CheckBody(context.Background(), bodyOf(t, "Subject: clean\r\n\r\nhello\r\n"))
	if r.Action != filter.Accept || len(r.Headers) != 1 || r.Headers[0].Value != "clamav by mxgate on mx.test" {
		t.Errorf("clean: %+v", r)
	}
	r = c.CheckBody(context.Background(), bodyOf(t, "Subject: bad\r\n\r\nVIRUS\r\n"))
	if r.Action != filter.Reject || r.Reason != ReasonVirus || r.Reply.Code != 554 || r.Reply.Text != "message refused, virus found: Test.Virus" {
		t.Errorf("infected: %+v", r)
	}
	// clamd gone: tempfail by default, accepted with a header when
	// configured; never a verdict.
	c2 := &Check{Client: newClient(t, Config{Address: "tcp:127.0.0.1:1", Timeout: time.Second}), Hostname: "mx.test", Logger: slog.New(slog.DiscardHandler)}
	r = c2.CheckBody(context.Background(), bodyOf(t, "x\r\n"))
	if r.Action != filter.Tempfail || r.Reason != ReasonScanError || r.Reply.Code != 451 || r.Err == nil {
		t.Errorf("scanner down: %+v", r)
	}
	c2.OnErrorAccept = true
	r = c2.CheckBody(context.Background(), bodyOf(t, "x\r\n"))
	if r.Action != filter.Accept || r.Err == nil || len(r.Headers) != 1 || r.Headers[0].Value != "not scanned (unavailable) by mxgate on mx.test" {
		t.Errorf("scanner down, on_error accept: %+v", r)
	}
}

// The same content is scanned once while its verdict is cached; errors are
// never cached; a TTL of 0 turns the cache off.
func TestCheckCache(t *testing.T) {
	f := newFakeTCP(t, verdictByContent)
	client := newClient(t, Config{Address: f.address(), Timeout: 5 * time.Second})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cache := NewMemoryCache(10, func() time.Time { return now })
	c := &Check{Client: client, Hostname: "mx.test", Cache: cache, CacheTTL: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	for i := 0; i < 3; i++ {
		if r := c.CheckBody(context.Background(), bodyOf(t, "Subject: same\r\n\r\nVIRUS\r\n")); r.Reason != ReasonVirus {
			t.Fatalf("round %d: %+v", i, r)
		}
		if r := c.CheckBody(context.Background(), bodyOf(t, "Subject: same\r\n\r\nclean\r\n")); r.Action != filter.Accept {
			t.Fatalf("round %d: %+v", i, r)
		}
	}
	if got := f.accepted.Load(); got != 2 {
		t.Errorf("clamd scanned %d times, want 2 (each content once)", got)
	}
	now = now.Add(time.Hour)
	c.CheckBody(context.Background(), bodyOf(t, "Subject: same\r\n\r\nclean\r\n"))
	if got := f.accepted.Load(); got != 3 {
		t.Errorf("after the TTL: %d scans, want 3", got)
	}
	c.CacheTTL = 0
	c.CheckBody(context.Background(), bodyOf(t, "Subject: same\r\n\r\nclean\r\n"))
	if got := f.accepted.Load(); got != 4 {
		t.Errorf("cache off: %d scans, want 4", got)
	}
	// An error is not cached.
	down := &Check{Client: newClient(t, Config{Address: "tcp:127.0.0.1:1", Timeout: time.Second}), Cache: cache, CacheTTL: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	before := cache.Len()
	down.CheckBody(context.Background(), bodyOf(t, "Subject: other\r\n\r\n"))
	if cache.Len() != before {
		t.Error("a scan error was cached")
	}
}

func TestMemoryCacheBounded(t *testing.T) {
	now := time.Now()
	c := NewMemoryCache(3, func() time.Time { return now })
	for i := 0; i < 10; i++ {
		_ = c.Put(context.Background(), string(rune('a'+i)), Result{}, time.Hour)
	}
	if c.Len() != 3 {
		t.Fatalf("%d entries, want 3", c.Len())
	}
	if _, ok, _ := c.Get(context.Background(), "j"); !ok {
		t.Error("newest entry evicted")
	}
	if _, ok, _ := c.Get(context.Background(), "a"); ok {
		t.Error("oldest entry kept")
	}
}
