package bayes

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/filter/bayes/redistest"
)

const testMinLearns = 20

func learnClasses(t *testing.T, c *Check, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := c.Learn(context.Background(), genDoc(t, false, i), false); err != nil {
			t.Fatal(err)
		}
		if err := c.Learn(context.Background(), genDoc(t, true, i), true); err != nil {
			t.Fatal(err)
		}
	}
}

// wantSymbol checks the message of the class (not learnt: i >= 1000) gets
// the symbol.
func wantSymbol(t *testing.T, c *Check, spam bool, want string) filter.Result {
	t.Helper()
	r := c.CheckBody(context.Background(), spoolMessage(t, genMessage(spam, 1000)))
	if r.Err != nil {
		t.Fatalf("spam=%v: error %v", spam, r.Err)
	}
	if len(r.Symbols) != 1 || r.Symbols[0].Name != want {
		t.Fatalf("spam=%v: symbols %+v, want one %s", spam, r.Symbols, want)
	}
	return r
}

func TestCheckMinLearns(t *testing.T) {
	c := &Check{Store: NewMemStore(), MinLearns: testMinLearns}
	learnClasses(t, c, testMinLearns-1)
	// One class short of min_learns: no symbol, and the metrics say why.
	if err := c.Learn(context.Background(), genDoc(t, false, 500), false); err != nil {
		t.Fatal(err)
	}
	r := c.CheckBody(context.Background(), spoolMessage(t, genMessage(true, 1000)))
	if r.Err != nil || len(r.Symbols) != 0 {
		t.Fatalf("below min_learns: symbols %+v, err %v; want none", r.Symbols, r.Err)
	}
	if a := testutil.ToFloat64(metricActive); a != 0 {
		t.Errorf("mxgate_bayes_active = %v below min_learns, want 0", a)
	}
	if h, s := testutil.ToFloat64(metricLearned.WithLabelValues("ham")), testutil.ToFloat64(metricLearned.WithLabelValues("spam")); h != testMinLearns || s != testMinLearns-1 {
		t.Errorf("mxgate_bayes_learned = ham %v, spam %v; want %d, %d", h, s, testMinLearns, testMinLearns-1)
	}

	if err := c.Learn(context.Background(), genDoc(t, true, 500), true); err != nil {
		t.Fatal(err)
	}
	r = wantSymbol(t, c, true, SymbolSpam)
	if r.Symbols[0].Score < MinSpamScore {
		t.Errorf("spam scored %v, want at least %v", r.Symbols[0].Score, MinSpamScore)
	}
	if r := wantSymbol(t, c, false, SymbolHam); r.Symbols[0].Score > MinHamScore {
		t.Errorf("ham scored %v, want at most %v", r.Symbols[0].Score, MinHamScore)
	}
	if a := testutil.ToFloat64(metricActive); a != 1 {
		t.Errorf("mxgate_bayes_active = %v at min_learns, want 1", a)
	}

	// Unlearning a spam drops the check below min_learns again.
	if err := c.Unlearn(context.Background(), genDoc(t, true, 500), true); err != nil {
		t.Fatal(err)
	}
	if r := c.CheckBody(context.Background(), spoolMessage(t, genMessage(true, 1000))); len(r.Symbols) != 0 {
		t.Errorf("after unlearn below min_learns: symbols %+v, want none", r.Symbols)
	}
}

// TestCheckRedisOutage: Redis down is an error result, never a verdict,
// counted; scoring resumes when the server is back on the same port.
func TestCheckRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	store := OpenRedis(RedisOptions{Addr: srv.Addr})
	defer store.Close()
	c := &Check{Store: store, MinLearns: testMinLearns}
	learnClasses(t, c, testMinLearns)
	wantSymbol(t, c, true, SymbolSpam)

	srv.Kill()
	before := testutil.ToFloat64(metricErrors.WithLabelValues("lookup"))
	body := spoolMessage(t, genMessage(true, 1000))
	r := c.CheckBody(context.Background(), body)
	if r.Err == nil || len(r.Symbols) != 0 {
		t.Fatalf("Redis down: symbols %+v, err %v; want an error and no symbol", r.Symbols, r.Err)
	}
	if got := testutil.ToFloat64(metricErrors.WithLabelValues("lookup")); got != before+1 {
		t.Errorf("mxgate_bayes_errors_total{op=lookup} = %v, want %v", got, before+1)
	}
	// In the pipeline the failure scores 0 and is reported as an error.
	d := filter.New(filter.Config{Body: []filter.BodyCheck{c}, Thresholds: filter.Thresholds{Tag: 5}}).Body(context.Background(), body, nil)
	if d.Score != 0 || d.Action != filter.Accept || len(d.Errors) != 1 || d.Symbols[0].Name != "BAYES_ERROR" {
		t.Errorf("pipeline with Redis down: score %v, action %v, errors %v, symbols %+v; want 0, accept, one error, BAYES_ERROR",
			d.Score, d.Action, d.Errors, d.Symbols)
	}
	if err := c.Learn(context.Background(), genDoc(t, true, 2000), true); err == nil {
		t.Error("Learn with Redis down: no error")
	}

	srv.Restart()
	wantSymbol(t, c, true, SymbolSpam)
	wantSymbol(t, c, false, SymbolHam)
}
