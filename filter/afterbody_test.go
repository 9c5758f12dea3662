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
