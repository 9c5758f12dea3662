package filter

import (
	"context"
	"testing"
)

// AfterBody is told the complete body decision, the verdict's headers
// included, and not a message refused before the body checks ran.
func TestAfterBody(t *testing.T) {
	var got []Decision
	cfg := Config{
		Body:       []BodyCheck{scored("S", 6)},
		Thresholds: Thresholds{Tag: 5, Reject: 15},
		Spam:       true,
		AfterBody:  func(_ context.Context, _ *Body, d Decision) { got = append(got, d) },
	}
	d := New(cfg).Body(context.Background(), testBody(t), nil)
	if len(got) != 1 || got[0].Action != Tag || got[0].Score != 6 || len(got[0].Headers) != len(d.Headers) || len(d.Headers) == 0 {
		t.Fatalf("after body: %+v, decision %+v", got, d)
	}
	// A recipient refused at the end of DATA before the body checks.
	got = nil
	cfg.Rcpt = []RcptCheck{rcptFunc{"grey", func(_ context.Context, r *Recipient) Result {
		if !r.AtData {
			return Result{Defer: true}
		}
		return Result{Action: Tempfail, Reply: &Reply{Code: 451, Enhanced: [3]int{4, 7, 1}, Text: "later"}}
	}}}
	d = New(cfg).Body(context.Background(), testBody(t), map[string][]Deferral{"u@example.com": {{Check: "grey"}}})
	if d.Action != Tempfail || len(got) != 0 {
		t.Errorf("refused before the body checks: %v, after body told %d times", d.Action, len(got))
	}
}

// A recipient decision deferred after the score sees the body decision's
// symbols with it (greylisting keyed by the SPF domain).
func TestDeferredAfterScoreSymbols(t *testing.T) {
	var got []Symbol
	grey := rcptFunc{"greylist", func(_ context.Context, r *Recipient) Result {
		if !r.AtData {
			return Result{DeferAfterScore: true}
		}
		got = r.Symbols
		return Result{}
	}}
	p := New(Config{Rcpt: []RcptCheck{grey}, Body: []BodyCheck{scored("SPF_PASS", -0.1), scored("S", 4)}, Spam: true,
		Scores: map[string]float64{"S": 4.5}})
	p.Body(context.Background(), testBody(t), map[string][]Deferral{"u@example.com": {{Check: "greylist", AfterScore: true}}})
	if len(got) != 2 || got[0].Name != "SPF_PASS" || got[1].Name != "S" || got[1].Score != 4.5 {
		t.Errorf("symbols after the score: %+v, want SPF_PASS and S with its configured score", got)
	}
}
