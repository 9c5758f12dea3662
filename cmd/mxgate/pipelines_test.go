package main

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/filter/bayes"
	"github.com/mxgate/mxgate/lists"
)

// fixedScore is a body check that scores every message.
type fixedScore float64

func (fixedScore) Name() string { return "fixed" }
func (f fixedScore) CheckBody(context.Context, *filter.Body) filter.Result {
	return filter.Result{Symbols: []filter.Symbol{{Name: "FIXED", Score: float64(f)}}}
}

// TestPoliciesAutolearn: with bayes.autolearn, the inbound pipeline learns
// a message the other checks score as spam; without it, nothing is learnt.
func TestPoliciesAutolearn(t *testing.T) {
	dir := t.TempDir()
	ls, err := lists.OpenFileStore(filepath.Join(dir, "lists.json"))
	if err != nil {
		t.Fatal(err)
	}
	msgPath := filepath.Join(dir, "msg")
	if err := os.WriteFile(msgPath, []byte("From: a@example.org\r\nSubject: win a prize\r\n\r\nclaim your prize now\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, on := range []bool{false, true} {
		cfg := defaultConfig()
		cfg.Spam.SenderAuth, cfg.Spam.Heuristics, cfg.Bayes.Autolearn = false, false, on
		store := bayes.NewMemStore()
		bc := &bayes.Check{Store: store, Features: bayes.DefaultFeatures}
		in, _, err := cfg.policies(checkDeps{lists: ls, extra: []filter.BodyCheck{fixedScore(13), bc}, logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		m, err := filter.OpenMessage("Q1", msgPath)
		if err != nil {
			t.Fatal(err)
		}
		conn := &filter.Conn{ID: "s1", IP: netip.MustParseAddr("192.0.2.1")}
		d := in.Pipeline.Body(context.Background(), &filter.Body{Conn: conn, From: "a@example.org", Rcpts: []string{"u@example.com"}, Msg: m}, nil)
		if d.Action != filter.Quarantine {
			t.Fatalf("autolearn %v: action %v, want quarantine at 13", on, d.Action)
		}
		nham, nspam, err := store.Learned(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int64{false: 0, true: 1}[on]; nham != 0 || nspam != want {
			t.Errorf("autolearn %v: learnt ham %d, spam %d; want 0, %d", on, nham, nspam, want)
		}
	}
}
