package e2e

import (
	"fmt"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

// queueLine is the queue section newNode writes.
var queueLine = regexp.MustCompile(`(?m)^queue: .*$`)

// setProductionRetry gives a node that is not started yet the default
// retry schedule (queue.retry_min 5m doubling to 1h) instead of the
// suite's seconds: only the backend health check can then make mail
// deferred for a down backend quick.
func setProductionRetry(t *testing.T, n *node) {
	t.Helper()
	data, err := os.ReadFile(n.configPath)
	if err != nil {
		t.Fatalf("e2e: read config: %v", err)
	}
	if !queueLine.Match(data) {
		t.Fatalf("e2e: no queue section in %s:\n%s", n.configPath, data)
	}
	data = queueLine.ReplaceAll(data, []byte("queue: {retry_min: 5m, retry_max: 1h, lifetime: 1h}"))
	if err := os.WriteFile(n.configPath, data, 0o644); err != nil {
		t.Fatalf("e2e: write config: %v", err)
	}
}

// deferredIDs returns the queue ids that have had a deferred delivery
// attempt.
func deferredIDs(n *node) map[string]bool {
	ids := map[string]bool{}
	for _, ev := range n.findEvents("event", "deliver", "result", "deferred") {
		ids[fmt.Sprint(ev["queue_id"])] = true
	}
	return ids
}

// TestBackendOutageShort: 30 deliveries are in flight when the only
// backend goes away for about a second. That is one outage: one
// backend_down (down for the first period, 5 s), one backend_up, and every
// message is delivered once as soon as the health check sees the backend
// back, not after queue.retry_min (5m here) or a down period inflated by
// each of the 30 failures.
func TestBackendOutageShort(t *testing.T) {
	const count = 30
	be := smtptest.Start(t)
	n := newNode(t, nodeOptions{backends: []string{be.Addr()}})
	setProductionRetry(t, n)
	n.start()

	be.HoldData()
	ids := sendN(t, n.inbound, "blip", count)
	wait.For(t, 30*time.Second, fmt.Sprintf("%d deliveries in flight", count), func() (bool, string) {
		h := be.Held()
		return h == count, fmt.Sprintf("%d held", h)
	})

	be.Stop() // every in-flight delivery loses its connection
	outageEnd := time.Now().Add(time.Second)
	be.ReleaseHeld()
	n.waitMetric(10*time.Second, 0, "mxgate_backend_up", "backend", be.Addr())
	// The outage lasts about a second: the backend listens again then.
	// This wait is the scenario under test (a 1 s blip), not a guess at
	// when something is done; what follows polls with deadlines.
	time.Sleep(time.Until(outageEnd))
	if err := be.Start(); err != nil {
		t.Fatal(err)
	}

	waitDeliveredOnce(t, be, ids, 30*time.Second)
	n.waitMetric(10*time.Second, 0, "mxgate_queue_messages")
	n.waitMetric(10*time.Second, 1, "mxgate_backend_up", "backend", be.Addr())

	downs := n.findEvents("event", "backend_down", "backend", be.Addr())
	if len(downs) != 1 {
		t.Errorf("e2e: %d backend_down events for one outage, want 1: %v", len(downs), downs)
	} else if got := fmt.Sprint(downs[0]["retry_in"]); got != "5s" {
		t.Errorf("e2e: backend_down retry_in %q, want the first down period 5s", got)
	}
	if ups := n.findEvents("event", "backend_up", "backend", be.Addr()); len(ups) != 1 {
		t.Errorf("e2e: %d backend_up events for one outage, want 1: %v", len(ups), ups)
	}
}

// TestBackendOutageAcrossRestart: mail deferred because the only backend
// is down stays queued across a node restart; the backend answers 2 s
// after the restart and every message is delivered once, within seconds
// (the health check's first period), not at its retry time (5m here).
func TestBackendOutageAcrossRestart(t *testing.T) {
	const count = 30
	be := smtptest.Start(t)
	be.Stop()
	n := newNode(t, nodeOptions{backends: []string{be.Addr()}})
	setProductionRetry(t, n)
	n.start()

	ids := sendN(t, n.inbound, "restart", count)
	wait.For(t, 30*time.Second, fmt.Sprintf("%d messages deferred", count), func() (bool, string) {
		d := len(deferredIDs(n))
		return d == count, fmt.Sprintf("%d deferred", d)
	})
	n.stop()
	if c := be.Count(); c != 0 {
		t.Fatalf("e2e: a stopped backend received %d messages", c)
	}

	requeued := len(n.findEvents("event", "requeue"))
	n.start()
	restarted := time.Now()
	evs := n.findEvents("event", "requeue")
	if len(evs) != requeued+1 || fmt.Sprint(evs[len(evs)-1]["count"]) != fmt.Sprint(count) {
		t.Fatalf("e2e: after restart, requeue events %v, want a last one with count %d", evs, count)
	}
	// The backend comes back 2 s after the node: the scenario under test,
	// not a guess at when something is done.
	time.Sleep(time.Until(restarted.Add(2 * time.Second)))
	if err := be.Start(); err != nil {
		t.Fatal(err)
	}

	waitDeliveredOnce(t, be, ids, 20*time.Second)
	n.waitMetric(10*time.Second, 0, "mxgate_queue_messages")
	n.waitMetric(10*time.Second, 1, "mxgate_backend_up", "backend", be.Addr())
}
