package e2e

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/dnstest"
	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

// dnsOutboundLine is a dns or outbound section; newNode writes neither.
var outboundLine = regexp.MustCompile(`(?m)^outbound:`)

// setOutboundPort makes a node that is not started yet deliver to remote MX
// hosts on port (outbound.port).
func setOutboundPort(t *testing.T, n *node, port string) {
	t.Helper()
	data, err := os.ReadFile(n.configPath)
	if err != nil {
		t.Fatalf("e2e: read config: %v", err)
	}
	if outboundLine.Match(data) {
		t.Fatalf("e2e: %s already has an outbound section:\n%s", n.configPath, data)
	}
	data = fmt.Appendf(data, "outbound: {port: %s}\n", port)
	if err := os.WriteFile(n.configPath, data, 0o644); err != nil {
		t.Fatalf("e2e: write config: %v", err)
	}
}

// metricOr0 is a sample's value, 0 when it is absent.
func metricOr0(t *testing.T, n *node, name string, labels ...string) float64 {
	t.Helper()
	v, _, err := n.metric(name, labels...)
	if err != nil {
		t.Fatalf("e2e: metrics: %v", err)
	}
	return v
}

// TestMXRouting: mail from mynetworks to other domains is routed by their
// MX, asked of the resolver of dns.resolver (a DNS server of the test):
// remote.e2e-mx.test's MX host, whose address is 127.0.0.1, gets the
// message on outbound.port; a null MX (5.1.10) and a domain that does not
// exist (5.1.2) bounce at once to the sender, the remote MX getting
// nothing; a SERVFAIL defers without a bounce. The queries are counted in
// mxgate_dns_queries_total.
func TestMXRouting(t *testing.T) {
	zone := dnstest.Zone{
		"remote.e2e-mx.test.":    {MX: []dnstest.MX{{Pref: 10, Host: "mx.remote.e2e-mx.test."}}},
		"mx.remote.e2e-mx.test.": {A: []string{"127.0.0.1"}},
		"nullmx.e2e-mx.test.":    {MX: []dnstest.MX{{Pref: 0, Host: "."}}},
		"broken.e2e-mx.test.":    {ServFail: true},
	}
	srv := dnstest.Start(t, zone)
	remote := smtptest.Start(t) // remote.e2e-mx.test's mail server
	be := smtptest.Start(t)     // e2e.test's backend: the sender's bounces
	n := newNode(t, nodeOptions{backends: []string{be.Addr()}, mynetworks: []string{"127.0.0.0/8"}, dns: srv.Addr()})
	setOutboundPort(t, n, portOf(remote.Addr()))
	n.start()

	send := func(msgID string, rcpts ...string) {
		t.Helper()
		c, _ := dialHello(t, n.relay)
		data := fmt.Appendf(nil, "From: <sender@e2e.test>\r\nTo: <%s>\r\nSubject: by MX\r\nMessage-ID: %s\r\n\r\nhello\r\n",
			strings.Join(rcpts, ">, <"), msgID)
		rep, err := c.sendMessage("sender@e2e.test", rcpts, data)
		if err != nil || !rep.is("250 2.0.0") {
			t.Fatalf("e2e: sending %s: %q, %v", msgID, rep, err)
		}
	}
	mxOK := func() float64 {
		return metricOr0(t, n, "mxgate_dns_queries_total", "type", "MX", "result", "ok")
	}

	// Delivered through the MX lookup.
	mxBefore := mxOK()
	send("<mx-1@client.e2e.test>", "user@remote.e2e-mx.test")
	wait.For(t, 30*time.Second, "the message at remote.e2e-mx.test's MX", func() (bool, string) {
		return remote.ByMessageID()["<mx-1@client.e2e.test>"] > 0, fmt.Sprintf("%d deliveries", remote.Count())
	})
	for _, d := range remote.Deliveries() {
		if !slices.Equal(d.Rcpts, []string{"user@remote.e2e-mx.test"}) || d.From != "sender@e2e.test" {
			t.Errorf("e2e: remote MX got from %q to %v, want sender@e2e.test to user@remote.e2e-mx.test", d.From, d.Rcpts)
		}
	}
	// The node logs its deliver line after the remote MX has answered:
	// wait for the line rather than read the log once.
	var deliverEv map[string]any
	wait.For(t, 10*time.Second, "the deliver line for user@remote.e2e-mx.test with destination mx", func() (bool, string) {
		for _, ev := range n.findEvents("event", "deliver", "result", "delivered", "destination", "mx") {
			if fmt.Sprint(ev["rcpts"]) == "[user@remote.e2e-mx.test]" {
				deliverEv = ev
				return true, ""
			}
		}
		return false, "not logged yet"
	})
	if deliverEv["addr"] != "127.0.0.1:"+portOf(remote.Addr()) {
		t.Errorf("e2e: delivered to %v, want the MX host's address 127.0.0.1 at outbound.port %s", deliverEv["addr"], portOf(remote.Addr()))
	}
	if got := srv.Queries("remote.e2e-mx.test.", "MX"); got < 1 {
		t.Errorf("e2e: the test resolver was asked %d times for remote.e2e-mx.test MX, want at least once", got)
	}
	if got := srv.Queries("mx.remote.e2e-mx.test.", "A"); got < 1 {
		t.Errorf("e2e: the test resolver was asked %d times for mx.remote.e2e-mx.test A, want at least once", got)
	}
	if after := mxOK(); after <= mxBefore {
		t.Errorf("e2e: mxgate_dns_queries_total{type=MX,result=ok} %v after the delivery, %v before: want it up", after, mxBefore)
	}
	if a := metricOr0(t, n, "mxgate_dns_queries_total", "type", "A", "result", "ok"); a < 1 {
		t.Errorf("e2e: mxgate_dns_queries_total{type=A,result=ok} = %v, want at least 1", a)
	}

	// Null MX and NXDOMAIN: one attempt, then a DSN to the sender.
	nxBefore := metricOr0(t, n, "mxgate_dns_queries_total", "type", "MX", "result", "nxdomain")
	send("<mx-2@client.e2e.test>", "user@nullmx.e2e-mx.test", "user@gone.e2e-mx.test")
	want := map[string]string{
		"rfc822;user@nullmx.e2e-mx.test": "5.1.10",
		"rfc822;user@gone.e2e-mx.test":   "5.1.2",
	}
	got := map[string]string{}
	wait.For(t, 30*time.Second, "bounces for both recipients at the sender's backend", func() (bool, string) {
		clear(got)
		for _, d := range be.Deliveries() {
			if !slices.Equal(d.Rcpts, []string{"sender@e2e.test"}) {
				continue
			}
			blocks, err := parseDSN(d.Data)
			if err != nil {
				t.Errorf("e2e: message to the sender is not a DSN: %v", err)
				continue
			}
			for _, b := range blocks {
				if b.action != "failed" {
					t.Errorf("e2e: DSN block %+v: action %q, want failed", b, b.action)
				}
				got[strings.ReplaceAll(b.finalRecipient, " ", "")] = b.status
			}
		}
		return len(got) == len(want), fmt.Sprintf("DSN statuses %v", got)
	})
	for rcpt, status := range want {
		if got[rcpt] != status {
			t.Errorf("e2e: DSN status for %s: %q, want %q", rcpt, got[rcpt], status)
		}
	}
	if ids := remote.ByMessageID(); ids["<mx-2@client.e2e.test>"] != 0 {
		t.Errorf("e2e: the remote MX got the message for a null MX and a missing domain %d times", ids["<mx-2@client.e2e.test>"])
	}
	if nx := metricOr0(t, n, "mxgate_dns_queries_total", "type", "MX", "result", "nxdomain"); nx <= nxBefore {
		t.Errorf("e2e: mxgate_dns_queries_total{type=MX,result=nxdomain} %v, %v before the missing domain: want it up", nx, nxBefore)
	}

	// SERVFAIL: deferred (4.4.3), not failed, and kept in the queue.
	send("<mx-3@client.e2e.test>", "user@broken.e2e-mx.test")
	wait.For(t, 30*time.Second, "a deferred delivery for broken.e2e-mx.test", func() (bool, string) {
		for _, ev := range n.findEvents("event", "deliver", "result", "deferred") {
			if fmt.Sprint(ev["rcpts"]) == "[user@broken.e2e-mx.test]" {
				if reply := fmt.Sprint(ev["reply"]); !strings.Contains(reply, "SERVFAIL") {
					t.Errorf("e2e: deferred delivery's reply %q, want the SERVFAIL named", reply)
				}
				return true, ""
			}
		}
		return false, "none yet"
	})
	for _, ev := range n.findEvents("event", "deliver", "result", "failed") {
		if fmt.Sprint(ev["rcpts"]) == "[user@broken.e2e-mx.test]" {
			t.Errorf("e2e: a SERVFAIL failed the recipient: %v", ev)
		}
	}
	n.waitMetric(10*time.Second, 1, "mxgate_queue_messages")
	if sf := metricOr0(t, n, "mxgate_dns_queries_total", "type", "MX", "result", "servfail"); sf < 1 {
		t.Errorf("e2e: mxgate_dns_queries_total{type=MX,result=servfail} = %v, want at least 1", sf)
	}
}
