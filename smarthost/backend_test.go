package smarthost

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mxgate/mxgate/internal/logtest"
	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

// newTestPool returns a pool of one backend on a fake clock.
func newTestPool(t *testing.T, addr string) (*backendPool, *fakeClock) {
	t.Helper()
	p := newBackendPool([]string{addr}, 5*time.Second, 5*time.Minute)
	clk := newFakeClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	p.now = clk.Now
	return p, clk
}

// poolState returns a backend's state under the pool's lock.
func poolState(p *backendPool, addr string) backendState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return *p.find(addr)
}

func backendUpGauge(addr string) float64 {
	return testutil.ToFloat64(metricBackendUp.WithLabelValues(addr))
}

func TestConcurrentFailuresAreOneOutage(t *testing.T) {
	const addr = "192.0.2.10:25"
	p, clk := newTestPool(t, addr)
	const inFlight = 30
	gens := make([]uint64, inFlight)
	for i := range gens {
		a, gen := p.pick(nil)
		if a != addr {
			t.Fatalf("pick %d = %q, want %s", i, a, addr)
		}
		gens[i] = gen
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		downs  int
		period time.Duration
	)
	for _, gen := range gens {
		wg.Go(func() {
			wentDown, d := p.markDown(addr, gen)
			mu.Lock()
			defer mu.Unlock()
			if wentDown {
				downs++
				period = d
			} else if d != 0 {
				t.Errorf("a failure of an outage already counted gave down period %v", d)
			}
		})
	}
	wg.Wait()
	if downs != 1 || period != 5*time.Second {
		t.Fatalf("%d failures in flight: %d went down, period %v; want 1 and 5s", inFlight, downs, period)
	}
	st := poolState(p, addr)
	if st.up || st.level != 1 || !st.downUntil.Equal(clk.Now().Add(5*time.Second)) {
		t.Fatalf("state after one outage: up=%v level=%d downUntil=+%v; want down, level 1, +5s",
			st.up, st.level, st.downUntil.Sub(clk.Now()))
	}
	if g := backendUpGauge(addr); g != 0 {
		t.Fatalf("mxgate_backend_up = %v while down", g)
	}
	if a, _ := p.pick(nil); a != "" {
		t.Fatalf("picked %q while it is down", a)
	}
	if due := p.dueForProbe(); len(due) != 0 {
		t.Fatalf("due for a probe before the down period is over: %v", due)
	}
}

func TestConsecutiveFailuresDouble(t *testing.T) {
	const addr = "192.0.2.11:25"
	p, clk := newTestPool(t, addr)
	_, gen := p.pick(nil)
	if wentDown, d := p.markDown(addr, gen); !wentDown || d != 5*time.Second {
		t.Fatalf("first failure: wentDown=%v period=%v, want true 5s", wentDown, d)
	}
	// Each probe that fails once the down period is over doubles it.
	for _, want := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second,
		80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute} {
		due := p.dueForProbe()
		if len(due) != 0 {
			t.Fatalf("due before the down period is over: %v", due)
		}
		clk.Advance(poolState(p, addr).downUntil.Sub(clk.Now()))
		due = p.dueForProbe()
		if len(due) != 1 || due[0].addr != addr {
			t.Fatalf("due for probe: %v, want %s", due, addr)
		}
		if wentDown, d := p.markDown(addr, due[0].gen); wentDown || d != want {
			t.Fatalf("failed probe: wentDown=%v period=%v, want false %v", wentDown, d, want)
		}
		// The same failure reported again (e.g. a late delivery of the
		// same generation) before the new period is over counts nothing.
		if _, d := p.markDown(addr, due[0].gen); d != 0 {
			t.Fatalf("second report of one probe failure gave period %v", d)
		}
	}

	// Only a probe brings it back: a late success of a delivery started
	// before the outage does not.
	if p.markUp(addr, gen) {
		t.Fatal("a delivery started before the outage brought the backend back")
	}
	clk.Advance(5 * time.Minute)
	due := p.dueForProbe()
	if len(due) != 1 {
		t.Fatalf("due for probe: %v", due)
	}
	if !p.markUp(addr, due[0].gen) {
		t.Fatal("successful probe did not bring the backend back")
	}
	if g := backendUpGauge(addr); g != 1 {
		t.Fatalf("mxgate_backend_up = %v after the probe succeeded", g)
	}
	// A failure of a delivery that started before it came back is old news.
	if wentDown, d := p.markDown(addr, gen); wentDown || d != 0 || !poolState(p, addr).up {
		t.Fatalf("stale failure after recovery: wentDown=%v period=%v up=%v", wentDown, d, poolState(p, addr).up)
	}

	// It answered a probe but failed the next delivery: still the same
	// run of failures, the period stays at the cap.
	_, gen = p.pick(nil)
	if wentDown, d := p.markDown(addr, gen); !wentDown || d != 5*time.Minute {
		t.Fatalf("failure right after a probe: wentDown=%v period=%v, want true 5m", wentDown, d)
	}
	clk.Advance(5 * time.Minute)
	due = p.dueForProbe()
	if len(due) != 1 || !p.markUp(addr, due[0].gen) {
		t.Fatalf("probe did not bring it back: %v", due)
	}
	// A delivered message ends the run: the next outage starts at 5s.
	_, gen = p.pick(nil)
	if p.markUp(addr, gen) {
		t.Fatal("a delivery to an up backend reported a comeback")
	}
	_, gen = p.pick(nil)
	if wentDown, d := p.markDown(addr, gen); !wentDown || d != 5*time.Second {
		t.Fatalf("failure after a delivery: wentDown=%v period=%v, want true 5s", wentDown, d)
	}
}

// TestInFlightOutageCountsOnceAndRecoveryRetries: deliveries in flight when
// the only backend goes away make one outage (one backend_down, one down
// period); when the health check finds it back, every deferred message is
// delivered at once although queue.retry_min is an hour.
func TestInFlightOutageCountsOnceAndRecoveryRetries(t *testing.T) {
	s := smtptest.Start(t)
	cfg := testConfig(t, s)
	cfg.Workers = 8
	var dialer cutDialer
	cfg.Dialer = dialer.dial
	var logs logtest.Buffer
	cfg.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	q := openQueue(t, cfg)
	clk := newFakeClock(time.Now())
	q.backends.now = clk.Now // the down period ends when the test says
	runQueue(t, q)

	s.HoldData()
	const n = 8
	for i := range n {
		submit(t, q, "alice@sender.test", []string{fmt.Sprintf("u%d@example.com", i)}, fmt.Sprintf("outage %d", i))
	}
	wait.For(t, waitTimeout, "every delivery in flight", func() bool { return s.Held() == n })
	dialer.cut()
	s.DropHeld()
	wait.For(t, waitTimeout, "every message deferred", func() bool {
		l := q.List()
		for _, m := range l {
			if m.InFlight || m.Attempts == 0 {
				return false
			}
		}
		return len(l) == n
	})
	st := poolState(q.backends, s.Addr())
	if st.up || st.level != 1 || !st.downUntil.Equal(clk.Now().Add(cfg.BackendDownMin)) {
		t.Fatalf("after %d failures in flight: up=%v level=%d downUntil=+%v; want down, level 1, +%v",
			n, st.up, st.level, st.downUntil.Sub(clk.Now()), cfg.BackendDownMin)
	}
	for _, m := range q.List() {
		if m.NextAttempt.Before(clk.Now().Add(time.Hour - time.Minute)) {
			t.Fatalf("message %s due at %v: the test relies on retry_min (1h) for messages not woken", m.ID, m.NextAttempt)
		}
	}

	dialer.restore()
	clk.Advance(cfg.BackendDownMin)
	wait.For(t, waitTimeout, "every message delivered", func() bool { return s.Count() == n && q.Len() == 0 })
	subjects := map[string]int{}
	for _, m := range s.Deliveries() {
		for line := range strings.Lines(string(m.Data)) {
			if subj, ok := strings.CutPrefix(line, "Subject: "); ok {
				subjects[strings.TrimSpace(subj)]++
			}
		}
	}
	for i := range n {
		if c := subjects[fmt.Sprintf("outage %d", i)]; c != 1 {
			t.Errorf("message %d delivered %d times", i, c)
		}
	}
	if lv := poolState(q.backends, s.Addr()).level; lv != 0 {
		t.Errorf("failure level %d after deliveries succeeded, want 0", lv)
	}
	if g := backendUpGauge(s.Addr()); g != 1 {
		t.Errorf("mxgate_backend_up = %v after recovery", g)
	}
	events := logEvents(t, logs.String())
	if c := events["backend_down"]; c != 1 {
		t.Errorf("%d backend_down events for one outage, want 1", c)
	}
	if c := events["backend_up"]; c != 1 {
		t.Errorf("%d backend_up events for one outage, want 1", c)
	}
}

// TestReopenRetriesBackendWaitersAtOnce: messages deferred because no
// backend was available are tried as soon as the spool is opened again, not
// at the retry time computed from queue.retry_min.
func TestReopenRetriesBackendWaitersAtOnce(t *testing.T) {
	a := smtptest.Start(t)
	a.SetDown(true)
	cfg := testConfig(t, a)
	q := openQueue(t, cfg)
	stop := runQueue(t, q)
	const n = 3
	for i := range n {
		submit(t, q, "alice@sender.test", []string{fmt.Sprintf("u%d@example.com", i)}, "reopen")
	}
	wait.For(t, waitTimeout, "every message deferred", func() bool {
		l := q.List()
		for _, m := range l {
			if m.InFlight || m.Attempts == 0 {
				return false
			}
		}
		return len(l) == n
	})
	stop()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	a.SetDown(false)
	q2 := openQueue(t, cfg)
	now := time.Now()
	for _, m := range q2.List() {
		if m.NextAttempt.After(now) {
			t.Fatalf("message %s waiting for a backend is due at %v after reopening, want now", m.ID, m.NextAttempt)
		}
	}
	runQueue(t, q2)
	wait.For(t, waitTimeout, "delivered after reopening", func() bool { return a.Count() == n && q2.Len() == 0 })
}

// TestShutdownLeavesMessageDue: an attempt cut short by the runner stopping
// does not push the message's next attempt back.
func TestShutdownLeavesMessageDue(t *testing.T) {
	s := smtptest.Start(t)
	cfg := testConfig(t, s)
	q := openQueue(t, cfg)
	stop := runQueue(t, q)
	s.HoldData()
	submit(t, q, "alice@sender.test", []string{"bob@example.com"}, "interrupted")
	wait.For(t, waitTimeout, "delivery in flight", func() bool { return s.Held() == 1 })
	stop()
	s.DropHeld()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q2 := openQueue(t, cfg)
	l := q2.List()
	if len(l) != 1 {
		t.Fatalf("queue after reopening: %+v", l)
	}
	if now := time.Now(); l[0].NextAttempt.After(now) {
		t.Fatalf("interrupted message due at %v, want by %v", l[0].NextAttempt, now)
	}
}

// logEvents counts the "event" values of a JSON log.
func logEvents(t *testing.T, log string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for line := range strings.Lines(log) {
		var ev struct {
			Event string `json:"event"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out[ev.Event]++
	}
	return out
}
