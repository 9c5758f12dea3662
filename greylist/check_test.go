package greylist

import (
	"context"
	"log/slog"
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
