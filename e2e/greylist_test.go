package e2e

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

// rcptFrom opens a session from the local address src, sends MAIL and RCPT
// and returns the RCPT reply; the connection stays open for DATA.
func rcptFrom(t *testing.T, src, addr, from, rcpt string) (*rawSMTP, smtpReply) {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("e2e: dial from %s: %v", src, err)
	}
	c := newRawSMTP(conn)
	if _, err := c.hello(); err != nil {
		c.close()
		t.Fatalf("e2e: %v", err)
	}
	c.expectCmd(t, "MAIL FROM:<"+from+">", "250")
	rep, err := c.cmd("RCPT TO:<" + rcpt + ">")
	if err != nil {
		c.close()
		t.Fatalf("e2e: RCPT: %v", err)
	}
	return c, rep
}

// finishMessage sends DATA and a small message on a session whose RCPT
// was accepted.
func finishMessage(t *testing.T, c *rawSMTP, subject string) smtpReply {
	t.Helper()
	c.expectCmd(t, "DATA", "354")
	if err := c.write(append(plainMessage(subject, "greylist test"), ".\r\n"...)); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	rep, err := c.readReply()
	if err != nil {
		t.Fatalf("e2e: end of DATA: %v", err)
	}
	return rep
}

func TestGreylisting(t *testing.T) {
	const delay = 2 * time.Second
	be := smtptest.Start(t)
	n := startNode(t, nodeOptions{backends: []string{be.Addr()},
		greylist:   fmt.Sprintf("{enabled: true, delay: %s, retry_window: 1h, lifetime: 1d, allow_recipients: [postmaster@e2e.test]}", delay),
		mynetworks: []string{"10.9.9.0/24", "127.0.0.3/32"}})
	const from, rcpt = "sender@example.org", "user@e2e.test"

	// First attempt: a new triplet.
	first := time.Now()
	c, rep := rcptFrom(t, "127.0.0.1", n.inbound, from, rcpt)
	c.close()
	if !rep.is("451 4.7.1") {
		t.Fatalf("e2e: first attempt: got %q, want 451 4.7.1", rep)
	}
	// Too early.
	c, rep = rcptFrom(t, "127.0.0.1", n.inbound, from, rcpt)
	c.close()
	if !rep.is("451 4.7.1") {
		t.Fatalf("e2e: early retry: got %q, want 451 4.7.1", rep)
	}

	// A restart keeps what the node has seen.
	n.stop()
	n.start()

	// Retry as an MTA would, until the delay has passed: every answer
	// before the delay is 451, the first 250 comes after it.
	var passed time.Time
	wait.For(t, 30*time.Second, "the retry after the delay to pass", func() (bool, string) {
		c, rep := rcptFrom(t, "127.0.0.1", n.inbound, from, rcpt)
		defer c.close()
		switch {
		case rep.is("250"):
			if time.Since(first) < delay {
				t.Fatalf("e2e: passed %v after the first attempt, before the %v delay", time.Since(first), delay)
			}
			passed = time.Now()
			if r := finishMessage(t, c, "greylist-passed"); !r.is("250 2.0.0") {
				t.Fatalf("e2e: message after passing: got %q", r)
			}
			return true, ""
		case rep.is("451 4.7.1"):
			return false, "still greylisted"
		}
		t.Fatalf("e2e: retry: got %q, want 451 4.7.1 or 250", rep)
		return false, ""
	})
	t.Logf("e2e: greylist: passed %v after the first attempt (delay %v), across a restart", passed.Sub(first).Round(time.Millisecond), delay)

	// Another address of the same /24 is the same client network.
	c, rep = rcptFrom(t, "127.0.0.2", n.inbound, from, rcpt)
	if !rep.is("250") {
		c.close()
		t.Fatalf("e2e: same /24, other address: got %q, want 250", rep)
	}
	if r := finishMessage(t, c, "greylist-same-net"); !r.is("250 2.0.0") {
		t.Fatalf("e2e: same /24 message: got %q", r)
	}
	c.close()

	// A different recipient is a new triplet.
	c, rep = rcptFrom(t, "127.0.0.1", n.inbound, from, "other@e2e.test")
	c.close()
	if !rep.is("451 4.7.1") {
		t.Fatalf("e2e: different recipient: got %q, want 451 4.7.1", rep)
	}

	// Never greylisted: clients in mynetworks (on either listener) and
	// allow-listed recipients.
	for _, tc := range []struct{ src, listener, rcpt string }{
		{"127.0.0.3", n.inbound, "fresh1@e2e.test"},
		{"127.0.0.3", n.relay, "fresh2@e2e.test"},
		{"127.0.0.1", n.inbound, "postmaster@e2e.test"},
	} {
		c, rep := rcptFrom(t, tc.src, tc.listener, "new-sender@example.net", tc.rcpt)
		c.close()
		if !rep.is("250") {
			t.Errorf("e2e: %s from %s: got %q, want 250 (not greylisted)", tc.rcpt, tc.src, rep)
		}
	}

	// The null sender is greylisted at the end of DATA, not at RCPT.
	c, rep = rcptFrom(t, "127.0.0.1", n.inbound, "", "bounce-target@e2e.test")
	if !rep.is("250") {
		c.close()
		t.Fatalf("e2e: RCPT with the null sender: got %q, want 250 (greylisted at DATA end)", rep)
	}
	if r := finishMessage(t, c, "greylist-null-sender"); !r.is("451 4.7.1") {
		t.Fatalf("e2e: null sender at DATA end: got %q, want 451 4.7.1", r)
	}
	c.close()

	wait.For(t, 20*time.Second, "both passed messages delivered", func() (bool, string) {
		return be.Count() == 2, fmt.Sprintf("%d delivered", be.Count())
	})
	// Counted since the restart: the other recipient and the bounce, and
	// the two passes.
	for result, atLeast := range map[string]float64{"new": 2, "passed": 2} {
		v, _, err := n.metric("mxgate_greylist_decisions_total", "result", result)
		if err != nil {
			t.Fatal(err)
		}
		if v < atLeast {
			t.Errorf("e2e: mxgate_greylist_decisions_total{result=%q} = %v, want at least %v", result, v, atLeast)
		}
	}
}
