package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

// TestMailLogFollowsOneMessage: one message followed through the mail log.
// Every line about the message carries its queue id under one key,
// "queue_id" (jq 'select(.queue_id=="ID")'): the accept, the scan and the
// delivery; the accept line also carries the session id, which leads back
// to the connection's lines.
func TestMailLogFollowsOneMessage(t *testing.T) {
	be := smtptest.Start(t)
	n := startNode(t, nodeOptions{backends: []string{be.Addr()}})
	c, _ := dialHello(t, n.inbound)
	rep, err := c.sendMessage("sender@example.org", []string{"user@e2e.test"},
		[]byte("Message-ID: <followed@client.e2e.test>\r\nSubject: follow me\r\n\r\nhello\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	qid, ok := queueIDOf(rep)
	if !ok {
		t.Fatalf("e2e: no queue id in %q", rep)
	}
	c.expectCmd(t, "QUIT", "221")
	wait.For(t, 30*time.Second, "the delivery line of "+qid, func() (bool, string) {
		evs := n.findEvents("queue_id", qid, "event", "deliver", "result", "delivered")
		return len(evs) == 1, fmt.Sprintf("%d deliver lines", len(evs))
	})

	byEvent := map[string][]map[string]any{}
	for _, ev := range n.findEvents("queue_id", qid) {
		e := fmt.Sprint(ev["event"])
		byEvent[e] = append(byEvent[e], ev)
	}
	for _, want := range []string{"accept", "deliver"} {
		if len(byEvent[want]) != 1 {
			t.Errorf("e2e: %d %q lines with queue_id %s, want 1; lines: %v", len(byEvent[want]), want, qid, byEvent)
		}
	}
	if len(byEvent["accept"]) != 1 {
		t.FailNow()
	}
	session := fmt.Sprint(byEvent["accept"][0]["session"])
	if len(n.findEvents("event", "connect", "session", session)) != 1 {
		t.Errorf("e2e: no connect line for session %s of the accept line", session)
	}
	// Nothing about the message uses another key for its id.
	for _, ev := range n.logEvents() {
		if id, ok := ev["id"]; ok && fmt.Sprint(id) == qid {
			t.Errorf("e2e: a line names the message under \"id\": %v", ev)
		}
	}
}
