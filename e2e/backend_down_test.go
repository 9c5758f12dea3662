package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

// sendN sends n messages on one connection, each must get 250 2.0.0; it
// returns the Message-IDs.
func sendN(t *testing.T, addr, tag string, count int) []string {
	t.Helper()
	c, _ := dialHello(t, addr)
	var ids []string
	for i := range count {
		mid := fmt.Sprintf("<%s-%d@client.e2e.test>", tag, i)
		data := []byte(fmt.Sprintf("From: <s@example.org>\r\nSubject: %s %d\r\nMessage-ID: %s\r\n\r\nbody %d\r\n", tag, i, mid, i))
		rep, err := c.sendMessage("s@example.org", []string{fmt.Sprintf("u%d@e2e.test", i%3)}, data)
		if err != nil {
			t.Fatalf("e2e: %s message %d: %v", tag, i, err)
		}
		if _, ok := queueIDOf(rep); !ok {
			t.Fatalf("e2e: %s message %d: got %q, want 250 2.0.0 Ok: queued as <id>", tag, i, rep)
		}
		ids = append(ids, mid)
	}
	c.expectCmd(t, "QUIT", "221")
	return ids
}

// waitDeliveredOnce waits until every id has reached b, and checks none
// arrived twice.
func waitDeliveredOnce(t *testing.T, b *smtptest.Server, ids []string, timeout time.Duration) {
	t.Helper()
	wait.For(t, timeout, fmt.Sprintf("%d messages delivered to %s", len(ids), b.Addr()), func() (bool, string) {
		got := b.ByMessageID()
		missing := 0
		for _, id := range ids {
			if got[id] == 0 {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d not delivered yet", missing)
	})
	got := b.ByMessageID()
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("e2e: %s delivered %d times, want once", id, got[id])
		}
	}
}

// TestBackendDown: with the only backend down, accepted mail waits in the
// queue (and the metrics say so) and is delivered when it returns; with one
// backend of two down, everything goes to the other.
func TestBackendDown(t *testing.T) {
	t.Run("OnlyBackendStopped", func(t *testing.T) {
		be := smtptest.Start(t)
		be.Stop()
		n := startNode(t, nodeOptions{backends: []string{be.Addr()}})
		ids := sendN(t, n.inbound, "down", 50)
		n.waitMetric(30*time.Second, 50, "mxgate_queue_messages")
		if c := be.Count(); c != 0 {
			t.Fatalf("e2e: a stopped backend received %d messages", c)
		}
		if err := be.Start(); err != nil {
			t.Fatal(err)
		}
		waitDeliveredOnce(t, be, ids, 90*time.Second)
		n.waitMetric(30*time.Second, 0, "mxgate_queue_messages")
		n.waitMetric(30*time.Second, 1, "mxgate_backend_up", "backend", be.Addr())
	})

	t.Run("OneOfTwoNotListening", func(t *testing.T) {
		live := smtptest.Start(t)
		dead := freeAddr(t) // nothing listens here
		n := startNode(t, nodeOptions{backends: []string{dead, live.Addr()}})
		ids := sendN(t, n.inbound, "half", 100)
		waitDeliveredOnce(t, live, ids, 60*time.Second)
		n.waitMetric(30*time.Second, 0, "mxgate_queue_messages")
		n.waitMetric(10*time.Second, 0, "mxgate_backend_up", "backend", dead)
		n.waitMetric(10*time.Second, 1, "mxgate_backend_up", "backend", live.Addr())
		if evs := n.findEvents("event", "bounce"); len(evs) != 0 {
			t.Errorf("e2e: %d bounces with one backend down, want none: %v", len(evs), evs[0])
		}
	})
}
