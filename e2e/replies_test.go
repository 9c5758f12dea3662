package e2e

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

// dialHello connects and completes the greeting and EHLO, failing the test
// otherwise.
func dialHello(t *testing.T, addr string) (*rawSMTP, smtpReply) {
	t.Helper()
	c, err := dialSMTP(addr)
	if err != nil {
		t.Fatalf("e2e: dial %s: %v", addr, err)
	}
	t.Cleanup(c.close)
	ehlo, err := c.hello()
	if err != nil {
		t.Fatalf("e2e: %s: %v", addr, err)
	}
	return c, ehlo
}

// TestSMTPReplies checks the exact replies of the inbound and relay
// listeners (README, "SMTP replies"); the plain exchanges are in
// testdata/dialogues/replies.
func TestSMTPReplies(t *testing.T) {
	be := smtptest.Start(t)
	n := startNode(t, nodeOptions{backends: []string{be.Addr()}, maxRecipients: 5, maxMessageBytes: 1048576})

	playDialogues(t, "replies", n)

	t.Run("EHLOExtensions", func(t *testing.T) {
		_, ehlo := dialHello(t, n.inbound)
		have := map[string]bool{}
		for _, l := range ehlo.lines[1:] {
			have[strings.ToUpper(strings.TrimSpace(l[4:]))] = true
		}
		for _, want := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 1048576", "ENHANCEDSTATUSCODES", "STARTTLS"} {
			if !have[want] {
				t.Errorf("e2e: EHLO reply lacks %q: %q", want, ehlo)
			}
		}
	})

	t.Run("TooManyRecipients", func(t *testing.T) {
		c, _ := dialHello(t, n.inbound)
		c.expectCmd(t, "MAIL FROM:<many@example.org>", "250 2.0.0")
		var rcpts []string
		for i := 1; i <= 5; i++ {
			r := fmt.Sprintf("rcpt%d@e2e.test", i)
			rcpts = append(rcpts, r)
			c.expectCmd(t, "RCPT TO:<"+r+">", "250 2.0.0")
		}
		c.expectCmd(t, "RCPT TO:<rcpt6@e2e.test>", "452 4.5.3")
		c.expectCmd(t, "DATA", "354")
		msg := []byte("From: <many@example.org>\r\nSubject: five of six\r\nMessage-ID: <many-rcpts@client.e2e.test>\r\n\r\nfor five\r\n")
		if err := c.write(append(dotStuff(msg), ".\r\n"...)); err != nil {
			t.Fatal(err)
		}
		c.expectReply(t, "end of DATA", "250 2.0.0")
		c.expectCmd(t, "QUIT", "221")

		var got []string
		wait.For(t, 30*time.Second, "the five recipients' delivery", func() (bool, string) {
			got = nil
			for _, d := range be.Deliveries() {
				if smtptest.HeaderValue(d.Data, "Message-ID") == "<many-rcpts@client.e2e.test>" {
					got = append(got, d.Rcpts...)
				}
			}
			return len(got) >= 5, fmt.Sprintf("delivered to %v", got)
		})
		slices.Sort(got)
		if !slices.Equal(got, rcpts) {
			t.Errorf("e2e: delivered to %v, want exactly %v", got, rcpts)
		}
	})

	t.Run("MessageOverLimitMidStream", func(t *testing.T) {
		c, _ := dialHello(t, n.inbound)
		c.expectCmd(t, "MAIL FROM:<big@example.org>", "250 2.0.0")
		c.expectCmd(t, "RCPT TO:<big@e2e.test>", "250 2.0.0")
		c.expectCmd(t, "DATA", "354")
		if err := c.write([]byte("From: <big@example.org>\r\nSubject: too big\r\nMessage-ID: <too-big@client.e2e.test>\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		line := []byte(strings.Repeat("x", 98) + "\r\n")
		chunk := bytes.Repeat(line, 640) // 64,000 bytes
		sent := 0
		for sent <= 1048576+100_000 {
			if err := c.write(chunk); err != nil {
				t.Fatalf("e2e: writing chunk at %d bytes: %v", sent, err)
			}
			sent += len(chunk)
		}
		// The limit is enforced while streaming: the node has refused
		// the message before the client has finished sending it.
		wait.For(t, 20*time.Second, "the reject of the oversized message in the mail log, before the end of DATA", func() (bool, string) {
			evs := n.findEvents("event", "reject", "reason", "message_too_large")
			return len(evs) > 0, fmt.Sprintf("%d reject events", len(evs))
		})
		for range 4 {
			if err := c.write(chunk); err != nil {
				t.Fatalf("e2e: writing after the limit: %v", err)
			}
		}
		if err := c.write([]byte(".\r\n")); err != nil {
			t.Fatal(err)
		}
		c.expectReply(t, "end of DATA of an oversized message", "552 5.3.4")
		// The session goes on.
		rep, err := c.sendMessage("small@example.org", []string{"small@e2e.test"},
			[]byte("Subject: small after big\r\nMessage-ID: <small-after-big@client.e2e.test>\r\n\r\nok\r\n"))
		if err != nil || !rep.is("250 2.0.0") {
			t.Errorf("e2e: message after the oversized one: %q, %v", rep, err)
		}
		c.expectCmd(t, "QUIT", "221")
		if got := be.ByMessageID()["<too-big@client.e2e.test>"]; got != 0 {
			t.Errorf("e2e: the oversized message was delivered %d times", got)
		}
	})

	t.Run("SMTPSmuggling", func(t *testing.T) { testSmuggling(t, n, be) })
}

// TestSMTPRepliesPerIPLimit is part of the reply checks: its node allows two
// connections per address.
func TestSMTPRepliesPerIPLimit(t *testing.T) {
	be := smtptest.Start(t)
	n := startNode(t, nodeOptions{backends: []string{be.Addr()}, perIPConnections: 2})
	var open []*rawSMTP
	for i := range 2 {
		c, err := dialSMTP(n.inbound)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.close)
		c.expectReply(t, fmt.Sprintf("greeting of connection %d", i+1), "220")
		open = append(open, c)
	}
	c3, err := dialSMTP(n.inbound)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.close()
	c3.expectReply(t, "greeting of the third connection from one address", "421 4.7.0")
	if reps, err := c3.readAll(); err != nil || len(reps) != 0 {
		t.Errorf("e2e: after 421 the connection should be closed; got %q, %v", reps, err)
	}
	// A slot freed is a slot available again.
	open[0].expectCmd(t, "QUIT", "221")
	open[0].close()
	wait.For(t, 10*time.Second, "a new connection to be greeted with 220 after one closed", func() (bool, string) {
		c, err := dialSMTP(n.inbound)
		if err != nil {
			return false, err.Error()
		}
		defer c.close()
		rep, err := c.readReply()
		if err != nil {
			return false, err.Error()
		}
		return rep.code == 220, rep.String()
	})
}

// smuggle is one way of hiding an end of data inside a message.
type smuggle struct {
	name string
	seq  string
	// want is the reply to the DATA: "250 2.0.0", "554 5.6.0" (bare CR),
	// or "either".
	want string
}

// testSmuggling sends, for each end-of-data look-alike, a message with a
// second transaction hidden after it (SMTP smuggling, CVE-2023-51764 and
// family). The client must get exactly one reply to its DATA, the backend
// at most one message for it, and never one from the smuggled sender.
func testSmuggling(t *testing.T, n *node, be *smtptest.Server) {
	cases := []smuggle{
		{"LF.LF", "\n.\n", "250 2.0.0"},
		{"LF.CRLF", "\n.\r\n", "250 2.0.0"},
		{"CRLF.LF", "\r\n.\n", "250 2.0.0"},
		{"CR.CR", "\r.\r", "554 5.6.0"},
		{"CR.CRLF", "\r.\r\n", "554 5.6.0"},
		{"LF.CR", "\n.\r", "554 5.6.0"},
		// go-smtp's DATA reader drops ".<CR>" after a CRLF (as
		// net/textproto's DotReader does), so mxgate may never see the
		// bare CR: one message, with or without it, is what matters.
		{"CRLF.CR", "\r\n.\r", "either"},
	}
	accepted := map[string]bool{}
	for i, sc := range cases {
		mid := fmt.Sprintf("<smuggle-%d@client.e2e.test>", i)
		t.Run(sc.name, func(t *testing.T) {
			c, _ := dialHello(t, n.inbound)
			c.expectCmd(t, "MAIL FROM:<good@example.org>", "250 2.0.0")
			c.expectCmd(t, fmt.Sprintf("RCPT TO:<smuggle%d@e2e.test>", i), "250 2.0.0")
			c.expectCmd(t, "DATA", "354")
			payload := "From: <good@example.org>\r\nSubject: smuggling " + sc.name + "\r\nMessage-ID: " + mid + "\r\n\r\nlegit body" +
				sc.seq +
				"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@e2e.test>\r\nDATA\r\nFrom: <evil@x>\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n.\r\n" +
				"QUIT\r\n"
			if err := c.write([]byte(payload)); err != nil {
				t.Fatal(err)
			}
			reps, err := c.readAll()
			if err != nil {
				t.Fatalf("e2e: reading replies: %v (got %q)", err, reps)
			}
			okData := len(reps) > 0 && (reps[0].is(sc.want) ||
				sc.want == "either" && (reps[0].is("250 2.0.0") || reps[0].is("554 5.6.0")))
			if len(reps) != 2 || !okData || !reps[1].is("221") {
				t.Fatalf("e2e: replies after DATA: %q; want exactly one reply to the DATA (%s) and then 221 to QUIT", reps, sc.want)
			}
			if reps[0].code == 250 {
				accepted[mid] = true
			}
		})
	}
	// Everything accepted has left the queue: whatever the backend will
	// ever get from these sessions, it has now.
	wait.For(t, 30*time.Second, "the smuggling tests' messages to be delivered", func() (bool, string) {
		got := be.ByMessageID()
		for mid := range accepted {
			if got[mid] == 0 {
				return false, mid + " not delivered yet"
			}
		}
		return true, ""
	})
	n.waitMetric(30*time.Second, 0, "mxgate_queue_messages")
	got := be.ByMessageID()
	for i, sc := range cases {
		mid := fmt.Sprintf("<smuggle-%d@client.e2e.test>", i)
		if got[mid] > 1 {
			t.Errorf("e2e: %s: the backend received %s %d times", sc.name, mid, got[mid])
		}
	}
	for _, d := range be.Deliveries() {
		if strings.EqualFold(d.From, "evil@x") || slices.Contains(d.Rcpts, "victim@e2e.test") {
			t.Errorf("e2e: smuggled message delivered: %s -> %v: %.300q", d.From, d.Rcpts, d.Data)
		}
	}
}
