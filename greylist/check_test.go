package greylist

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/filter"
)

func TestCheckModes(t *testing.T) {
	conn := &filter.Conn{IP: ip("192.0.2.10")}
	trusted := &filter.Conn{IP: ip("10.0.0.5"), Trusted: true}
	ctx := context.Background()

	t.Run("Rcpt", func(t *testing.T) {
		g, _, _ := newTest(t, Config{Delay: time.Minute, RetryWindow: time.Hour, Lifetime: 24 * time.Hour})
		c := &Check{Greylister: g, Logger: slog.New(slog.DiscardHandler)}
		r := c.CheckRcpt(ctx, &filter.Recipient{Conn: conn, From: "a@example.org", Rcpt: "u@example.com"})
		if r.Action != filter.Tempfail || r.Reason != ReasonGreylisted || r.Reply == nil || r.Reply.Code != 451 {
			t.Fatalf("new triplet: %+v, want a greylisting tempfail", r)
		}
		if r := c.CheckRcpt(ctx, &filter.Recipient{Conn: trusted, From: "a@example.org", Rcpt: "u@example.com"}); r.Action != filter.Accept {
			t.Errorf("trusted client greylisted: %+v", r)
		}
		// A bounce is decided at the end of DATA.
		if r := c.CheckRcpt(ctx, &filter.Recipient{Conn: conn, From: "", Rcpt: "u@example.com"}); !r.Defer {
			t.Errorf("null sender at RCPT: %+v, want deferred", r)
		}
		if r := c.CheckRcpt(ctx, &filter.Recipient{Conn: conn, From: "", Rcpt: "u@example.com", AtData: true}); r.Action != filter.Tempfail {
			t.Errorf("null sender at DATA: %+v, want greylisted", r)
		}
	})

	t.Run("Score", func(t *testing.T) {
		g, st, clk := newTest(t, Config{Delay: time.Minute, RetryWindow: time.Hour, Lifetime: 24 * time.Hour})
		c := &Check{Greylister: g, Logger: slog.New(slog.DiscardHandler), ScoreThreshold: 4}
		r := c.CheckRcpt(ctx, &filter.Recipient{Conn: conn, From: "a@example.org", Rcpt: "u@example.com"})
		if !r.DeferAfterScore || r.Action != filter.Accept {
			t.Fatalf("score mode at RCPT: %+v, want deferred after the score", r)
		}
		low := &filter.Recipient{Conn: conn, From: "a@example.org", Rcpt: "u@example.com", AtData: true, Scored: true, Score: 3.9}
		if r := c.CheckRcpt(ctx, low); r.Action != filter.Accept {
			t.Fatalf("score under the threshold: %+v, want accepted", r)
		}
		key := g.TripletKey(conn.IP, "a@example.org", "u@example.com")
		if _, ok, _ := st.GetTriplet(ctx, key); ok {
			t.Fatal("a low-scoring message recorded a triplet")
		}
		high := *low
		high.Score = 4
		if r := c.CheckRcpt(ctx, &high); r.Action != filter.Tempfail {
			t.Fatalf("score at the threshold: %+v, want greylisted", r)
		}
		if _, ok, _ := st.GetTriplet(ctx, key); !ok {
			t.Fatal("the triplet of a greylisted message is not recorded")
		}
		clk.Advance(2 * time.Minute)
		if r := c.CheckRcpt(ctx, &high); r.Action != filter.Accept {
			t.Fatalf("retry after the delay: %+v, want passed", r)
		}
	})
}

// TestCheckKeySPFDomain: in score mode with KeySPFDomain, a sender whose
// SPF passed is keyed by its domain, so its retry from another network of
// the domain passes; without an SPF pass (or without the option) the
// client network keys the triplet.
func TestCheckKeySPFDomain(t *testing.T) {
	ctx := context.Background()
	spfPass := []filter.Symbol{{Name: "SPF_PASS", Score: -0.1, Detail: "Example.ORG"}, {Name: "RBL_X", Score: 5}}
	spfFail := []filter.Symbol{{Name: "SPF_FAIL", Score: 2, Detail: "example.org"}, {Name: "RBL_X", Score: 5}}
	rcpt := func(client string, syms []filter.Symbol) *filter.Recipient {
		return &filter.Recipient{Conn: &filter.Conn{IP: ip(client)}, From: "a@example.org", Rcpt: "u@example.com",
			AtData: true, Scored: true, Score: 5, Symbols: syms}
	}
	g, st, clk := newTest(t, Config{Delay: time.Minute, RetryWindow: time.Hour, Lifetime: 24 * time.Hour, AutoAllowAfter: -1})
	c := &Check{Greylister: g, Logger: slog.New(slog.DiscardHandler), ScoreThreshold: 4, KeySPFDomain: true}

	r := c.CheckRcpt(ctx, rcpt("192.0.2.10", spfPass))
	if r.Action != filter.Tempfail {
		t.Fatalf("first attempt: %+v, want greylisted", r)
	}
	if !slices.Contains(r.LogAttrs, any("spf:example.org")) {
		t.Errorf("log attributes %v lack the key spf:example.org", r.LogAttrs)
	}
	if _, ok, _ := st.GetTriplet(ctx, tripletKey("spf:example.org", "a@example.org", "u@example.com")); !ok {
		t.Fatal("no triplet keyed by the SPF domain")
	}
	if _, ok, _ := st.GetTriplet(ctx, g.TripletKey(ip("192.0.2.10"), "a@example.org", "u@example.com")); ok {
		t.Fatal("a triplet keyed by the client network too")
	}
	clk.Advance(2 * time.Minute)
	// The retry comes from another of the domain's networks.
	if r := c.CheckRcpt(ctx, rcpt("198.51.100.7", spfPass)); r.Action != filter.Accept {
		t.Fatalf("retry from another network with SPF passing: %+v, want passed", r)
	}
	// SPF failing: the client network keys the triplet.
	if r := c.CheckRcpt(ctx, rcpt("203.0.113.9", spfFail)); r.Action != filter.Tempfail {
		t.Fatalf("SPF failing from a new network: %+v, want greylisted", r)
	}
	if _, ok, _ := st.GetTriplet(ctx, g.TripletKey(ip("203.0.113.9"), "a@example.org", "u@example.com")); !ok {
		t.Fatal("SPF failing: no triplet keyed by the client network")
	}
	// Without the option, an SPF pass from a new network is a new triplet.
	c.KeySPFDomain = false
	if r := c.CheckRcpt(ctx, rcpt("100.64.0.1", spfPass)); r.Action != filter.Tempfail {
		t.Fatalf("key_spf_domain off: %+v, want greylisted by network", r)
	}
}

func TestSPFPassDomain(t *testing.T) {
	for detail, want := range map[string]string{"example.org": "example.org", "example.org.": "example.org", "": "",
		"a|b.example": "", "x@example.org": "", strings.Repeat("a", 254): ""} {
		if got := spfPassDomain([]filter.Symbol{{Name: "SPF_PASS", Detail: detail}}); got != want {
			t.Errorf("SPF_PASS %q: domain %q, want %q", detail, got, want)
		}
	}
	if got := spfPassDomain([]filter.Symbol{{Name: "SPF_SOFTFAIL", Detail: "example.org"}}); got != "" {
		t.Errorf("SPF_SOFTFAIL: domain %q, want none", got)
	}
}
