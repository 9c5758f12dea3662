package bayes

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mxgate/mxgate/filter"
)

func TestAutolearnClass(t *testing.T) {
	a := &Autolearn{Spam: DefaultAutolearnSpam, Ham: DefaultAutolearnHam}
	sym := func(name string, score float64) filter.Symbol { return filter.Symbol{Name: name, Score: score} }
	for _, tc := range []struct {
		name string
		d    filter.Decision
		want string
	}{
		{"spam by the other checks", filter.Decision{Action: filter.Quarantine, Check: filter.SpamReason, Score: 13,
			Symbols: []filter.Symbol{sym("RBL_X", 7), sym("SUBJ_ALL_CAPS", 6)}}, "spam"},
		{"refused as spam", filter.Decision{Action: filter.Reject, Check: filter.SpamReason, Score: 20,
			Symbols: []filter.Symbol{sym("RBL_X", 14), sym("BAYES_SPAM", 6)}}, "spam"},
		{"spam only with Bayes' own score", filter.Decision{Action: filter.Quarantine, Check: filter.SpamReason, Score: 14,
			Symbols: []filter.Symbol{sym("RBL_X", 8), sym("BAYES_SPAM", 6)}}, ""},
		{"a virus", filter.Decision{Action: filter.Reject, Check: "clamav", Score: 13,
			Symbols: []filter.Symbol{sym("RBL_X", 13)}}, ""},
		{"greylisted", filter.Decision{Action: filter.Tempfail, Check: "greylist", Score: 13,
			Symbols: []filter.Symbol{sym("RBL_X", 13)}}, ""},
		{"allow-listed", filter.Decision{Action: filter.Accept, Score: 13, Symbols: []filter.Symbol{sym("ALLOWLISTED", 0), sym("RBL_X", 13)}}, ""},
		{"GTUBE", filter.Decision{Action: filter.Reject, Check: filter.SpamReason, Score: 1000, Symbols: []filter.Symbol{sym("GTUBE", 1000)}}, ""},
		{"authenticated ham", filter.Decision{Action: filter.Accept, Score: -3.8,
			Symbols: []filter.Symbol{sym("SPF_PASS", -0.1), sym("DKIM_VALID", -0.2), sym("DMARC_PASS", -0.5), sym("BAYES_HAM", -3)}}, "ham"},
		{"ham only with Bayes' own score", filter.Decision{Action: filter.Accept, Score: -2.9,
			Symbols: []filter.Symbol{sym("SPF_PASS", -0.1), sym("BAYES_HAM", -3), sym("SPF_NONE", 0.2)}}, ""},
		{"a check failed", filter.Decision{Action: filter.Accept, Score: -0.8, Symbols: []filter.Symbol{sym("DMARC_PASS", -0.8), sym("DNSBL_ERROR", 0)},
			Errors: []filter.CheckError{{Check: "dnsbl", Err: errors.New("timeout")}}}, ""},
		{"tagged, under the spam bound", filter.Decision{Action: filter.Tag, Check: filter.SpamReason, Score: 6, Symbols: []filter.Symbol{sym("RBL_X", 6)}}, ""},
	} {
		if got := a.Class(tc.d); got != tc.want {
			t.Errorf("%s: class %q, want %q", tc.name, got, tc.want)
		}
	}
}

// failingStore fails every learn.
type failingStore struct{ Store }

func (failingStore) Learn(context.Context, []uint64, bool, int64) error {
	return errors.New("store down")
}

// AfterBody learns the message in the class its decision gives, and
// nothing else; a store failure is counted.
func TestAutolearnLearns(t *testing.T) {
	store := NewMemStore()
	a := &Autolearn{Check: &Check{Store: store}, Spam: DefaultAutolearnSpam, Ham: DefaultAutolearnHam}
	ctx := context.Background()
	spam := filter.Decision{Action: filter.Quarantine, Check: filter.SpamReason, Score: 12, Symbols: []filter.Symbol{{Name: "RBL_X", Score: 12}}}
	ham := filter.Decision{Action: filter.Accept, Score: -0.8, Symbols: []filter.Symbol{{Name: "DMARC_PASS", Score: -0.8}}}
	neither := filter.Decision{Action: filter.Accept, Score: 1}
	before := testutil.ToFloat64(metricAutolearn.WithLabelValues("spam"))
	a.AfterBody(ctx, spoolMessage(t, genMessage(true, 1)), spam)
	a.AfterBody(ctx, spoolMessage(t, genMessage(false, 1)), ham)
	a.AfterBody(ctx, spoolMessage(t, genMessage(false, 2)), ham)
	a.AfterBody(ctx, spoolMessage(t, genMessage(false, 3)), neither)
	nham, nspam, err := store.Learned(ctx)
	if err != nil || nham != 2 || nspam != 1 {
		t.Fatalf("learnt ham %d, spam %d (%v); want 2, 1", nham, nspam, err)
	}
	if d := testutil.ToFloat64(metricAutolearn.WithLabelValues("spam")) - before; d != 1 {
		t.Errorf("mxgate_bayes_autolearn_total{class=spam} rose by %v, want 1", d)
	}
	// The spam message's words are now counted as spam.
	doc := genDoc(t, true, 1)
	_, _, counts, err := store.Lookup(ctx, Tokenize(doc, DefaultFeatures))
	if err != nil {
		t.Fatal(err)
	}
	var spamHits int64
	for _, c := range counts {
		spamHits += c.Spam
	}
	if spamHits == 0 {
		t.Error("the autolearnt spam left no spam counts")
	}

	a.Check.Store = failingStore{store}
	errs := testutil.ToFloat64(metricErrors.WithLabelValues("learn"))
	a.AfterBody(ctx, spoolMessage(t, genMessage(true, 5)), spam)
	if d := testutil.ToFloat64(metricErrors.WithLabelValues("learn")) - errs; d != 1 {
		t.Errorf("a failed autolearn: mxgate_bayes_errors_total{op=learn} rose by %v, want 1", d)
	}
}
