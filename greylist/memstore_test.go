package greylist

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMemoryStorePersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "greylist.json")
	st, err := OpenMemoryStore(path, nil)
	if err != nil {
		t.Fatalf("open missing file: %v", err)
	}
	clk := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	cfg := DefaultConfig()
	cfg.Clock = clk.Now
	g := New(cfg, st)
	check(t, g, "192.0.2.10", "a@example.org", "u@example.com", ResultNew)
	pass(t, g, clk, "192.0.2.10", "b@example.org", "u@example.com")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st2, err := OpenMemoryStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	g2 := New(cfg, st2)
	// The first triplet's delay has passed on the clock; it is remembered.
	check(t, g2, "192.0.2.10", "a@example.org", "u@example.com", ResultPassed)
	check(t, g2, "192.0.2.10", "b@example.org", "u@example.com", ResultPassed)
	n, ok, _ := st2.GetNetwork(context.Background(), "192.0.2.0/24")
	if !ok || n.Passes != 2 {
		t.Errorf("network after reopen = %+v, %v; want 2 passes", n, ok)
	}
	if err := st2.Close(); err != nil {
		t.Fatal(err)
	}
	// No temporary files left behind.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries, want only the snapshot", len(entries))
	}
}

func TestMemoryStoreCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "greylist.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := OpenMemoryStore(path, nil)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("OpenMemoryStore(corrupt) error = %v, want one naming %s", err, path)
	}
}

func TestMemoryStoreExpire(t *testing.T) {
	st, _ := OpenMemoryStore("", nil)
	ctx := context.Background()
	now := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	_ = st.PutTriplet(ctx, "old", Triplet{ExpiresAt: now.Add(-time.Second)})
	_ = st.PutTriplet(ctx, "edge", Triplet{ExpiresAt: now})
	_ = st.PutTriplet(ctx, "live", Triplet{ExpiresAt: now.Add(time.Second)})
	_ = st.PutNetwork(ctx, "n-old", Network{Passes: 5, AllowedUntil: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Hour)})
	_ = st.PutNetwork(ctx, "n-allowed", Network{Passes: 5, AllowedUntil: now.Add(time.Hour)})
	_ = st.PutNetwork(ctx, "n-counting", Network{Passes: 2, ExpiresAt: now.Add(time.Hour)})
	if got := st.Expire(now); got != 3 {
		t.Errorf("Expire = %d, want 3", got)
	}
	for _, k := range []string{"old", "edge"} {
		if _, ok, _ := st.GetTriplet(ctx, k); ok {
			t.Errorf("triplet %s survived", k)
		}
	}
	if _, ok, _ := st.GetTriplet(ctx, "live"); !ok {
		t.Error("live triplet expired")
	}
	for _, k := range []string{"n-allowed", "n-counting"} {
		if _, ok, _ := st.GetNetwork(ctx, k); !ok {
			t.Errorf("network %s expired", k)
		}
	}
	if got := st.Expire(now); got != 0 {
		t.Errorf("second Expire = %d, want 0", got)
	}
}

func TestMemoryStoreRunFinalFlush(t *testing.T) {
	path := filepath.Join(t.TempDir(), "greylist.json")
	st, _ := OpenMemoryStore(path, nil)
	_ = st.PutTriplet(context.Background(), "k", Triplet{ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st.Run(ctx, time.Hour) // returns at once, flushing
	st2, err := OpenMemoryStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := st2.GetTriplet(context.Background(), "k"); !ok {
		t.Error("Run did not flush on exit")
	}
}
