package e2e

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

// expectClosed reads until the server closes the connection; any further
// reply is an error.
func expectClosed(t *testing.T, c *rawSMTP, what string) {
	t.Helper()
	reps, err := c.readAll()
	if err != nil && !isConnReset(err) {
		t.Fatalf("e2e: %s: waiting for the server to close: %v (replies %q)", what, err, reps)
	}
	if len(reps) > 0 {
		t.Fatalf("e2e: %s: the server went on answering after it should have closed: %q", what, reps)
	}
}

func isConnReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || errors.Is(err, net.ErrClosed))
}

// TestHostilePeers: what a hostile or broken Internet peer sees, each case
// an exact dialogue with a node (issue 10's list, and Postfix's answers
// where mxgate follows them).
func TestHostilePeers(t *testing.T) {
	be := smtptest.Start(t)
	n := startNode(t, nodeOptions{
		backends: []string{be.Addr()},
		// Short timeouts, so that the timeout cases end quickly; the
		// default limits of 20 errors and 100 junk commands.
		limits: "command_timeout: 2s, data_timeout: 2s",
	})
	// The plain exchanges: testdata/dialogues/hostile.
	playDialogues(t, "hostile", n)

	t.Run("NestedMAILKeepsRecipients", func(t *testing.T) {
		c, _ := dialHello(t, n.inbound)
		c.expectCmd(t, "MAIL FROM:<first-sender@example.org>", "250 2.0.0")
		c.expectCmd(t, "RCPT TO:<first@e2e.test>", "250 2.0.0")
		c.expectCmd(t, "MAIL FROM:<second-sender@example.org>", "503 5.5.1")
		c.expectCmd(t, "RCPT TO:<second@e2e.test>", "250 2.0.0")
		c.expectCmd(t, "DATA", "354")
		if err := c.write([]byte("Message-ID: <nested@client.e2e.test>\r\nSubject: nested\r\n\r\nbody\r\n.\r\n")); err != nil {
			t.Fatal(err)
		}
		c.expectReply(t, "end of DATA", "250 2.0.0")
		d := waitDelivery(t, be, "<nested@client.e2e.test>")
		rcpts := slices.Sorted(slices.Values(d.Rcpts))
		if d.From != "first-sender@example.org" || !slices.Equal(rcpts, []string{"first@e2e.test", "second@e2e.test"}) {
			t.Errorf("e2e: delivered from %q to %v, want from first-sender@example.org to both recipients", d.From, rcpts)
		}
	})

	t.Run("LongLinesAccepted", func(t *testing.T) {
		// Lines over 998 octets break RFC 5321 but are common in
		// generated HTML; Postfix accepts them. mxgate accepts them
		// whatever the command (DATA or BDAT) and however the chunks
		// fall, and folds them for the next hop.
		long1 := strings.Repeat("a", 2100)
		long2 := strings.Repeat("b", 5000)
		body := func(id string) []byte {
			return []byte("Message-ID: <" + id + "@client.e2e.test>\r\nSubject: long lines\r\n\r\n" + long1 + "\r\nshort\r\n" + long2 + "\r\n")
		}
		c, _ := dialHello(t, n.inbound)
		if rep, err := c.sendMessage("sender@example.org", []string{"user@e2e.test"}, body("long-data")); err != nil || !rep.is("250 2.0.0") {
			t.Fatalf("e2e: DATA with long lines: %q, %v", rep, err)
		}
		for _, split := range []int{1000, 3000, 60} {
			id := fmt.Sprintf("long-bdat-%d", split)
			msg := body(id)
			c.expectCmd(t, "MAIL FROM:<sender@example.org>", "250 2.0.0")
			c.expectCmd(t, "RCPT TO:<user@e2e.test>", "250 2.0.0")
			for off := 0; off < len(msg); off += split {
				chunk := msg[off:min(off+split, len(msg))]
				last := ""
				if off+split >= len(msg) {
					last = " LAST"
				}
				if err := c.write(append([]byte(fmt.Sprintf("BDAT %d%s\r\n", len(chunk), last)), chunk...)); err != nil {
					t.Fatal(err)
				}
				want := "250 2.0.0"
				rep, err := c.readReply()
				if err != nil || !rep.is(want) {
					t.Fatalf("e2e: %s: BDAT chunk at %d: %q, %v", id, off, rep, err)
				}
			}
		}
		for _, id := range []string{"long-data", "long-bdat-1000", "long-bdat-3000", "long-bdat-60"} {
			d := waitDelivery(t, be, "<"+id+"@client.e2e.test>")
			// Stored as received, folded on the way out to lines
			// of 998 octets at most (CRLF SP inserted, as Postfix).
			for i, l := range strings.Split(string(d.Data), "\r\n") {
				if len(l) > 998 {
					t.Errorf("e2e: %s: delivered line %d has %d octets", id, i, len(l))
				}
			}
			_, rest, _ := splitReceived(d.Data)
			unfolded := bytes.ReplaceAll(rest, []byte("\r\n "), nil)
			if !bytes.Contains(unfolded, []byte("\r\n\r\n"+long1+"\r\nshort\r\n"+long2+"\r\n")) {
				t.Errorf("e2e: %s: the long lines did not arrive intact once unfolded (%d bytes delivered)", id, len(d.Data))
			}
		}
	})

	t.Run("TruncatedBDATNotStored", func(t *testing.T) {
		c, _ := dialHello(t, n.inbound)
		c.expectCmd(t, "MAIL FROM:<sender@example.org>", "250 2.0.0")
		c.expectCmd(t, "RCPT TO:<user@e2e.test>", "250 2.0.0")
		part := "Message-ID: <truncated@client.e2e.test>\r\nSubject: cut\r\n\r\nonly the beginning of a long message\r\n"
		if err := c.write([]byte(fmt.Sprintf("BDAT 100000 LAST\r\n%s", part))); err != nil {
			t.Fatal(err)
		}
		c.close()
		wait.For(t, 10*time.Second, "the truncated BDAT in the mail log", func() (bool, string) {
			evs := n.findEvents("event", "reject", "reason", "lost_connection", "after", "BDAT")
			return len(evs) == 1, fmt.Sprintf("%d events", len(evs))
		})
		// A message sent afterwards is delivered; the cut one never is.
		c2, _ := dialHello(t, n.inbound)
		if rep, err := c2.sendMessage("sender@example.org", []string{"user@e2e.test"},
			[]byte("Message-ID: <after-truncated@client.e2e.test>\r\n\r\ncontrol\r\n")); err != nil || !rep.is("250 2.0.0") {
			t.Fatalf("e2e: control message: %q, %v", rep, err)
		}
		waitDelivery(t, be, "<after-truncated@client.e2e.test>")
		if got := be.ByMessageID()["<truncated@client.e2e.test>"]; got != 0 {
			t.Errorf("e2e: the truncated BDAT message was delivered %d times, want 0", got)
		}
		if evs := n.findEvents("event", "accept", "size", fmt.Sprint(len(part))); len(evs) != 0 {
			t.Errorf("e2e: the truncated message was accepted: %v", evs)
		}
	})

	t.Run("STARTTLSDropsPipelinedPlainText", func(t *testing.T) {
		c, ehlo := dialHello(t, n.inbound)
		if !slices.ContainsFunc(ehlo.lines, func(l string) bool { return strings.HasSuffix(l, "STARTTLS") }) {
			t.Fatalf("e2e: EHLO does not offer STARTTLS: %q", ehlo)
		}
		// NOOP rides in the same packet as STARTTLS, in plain text:
		// it must be discarded, not answered inside TLS.
		if err := c.write([]byte("STARTTLS\r\nNOOP\r\n")); err != nil {
			t.Fatal(err)
		}
		c.expectReply(t, "STARTTLS", "220 2.0.0")
		tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true, ServerName: "mx1.e2e.test"})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("e2e: TLS handshake: %v", err)
		}
		c = newRawSMTP(tc)
		// Over TLS the client starts again with EHLO: MAIL first is
		// refused.
		c.expectCmd(t, "MAIL FROM:<sender@example.org>", "503 5.5.1")
		rep := c.expectCmd(t, "EHLO again.example.org", "250")
		if !strings.Contains(rep.lines[0], "again.example.org") {
			t.Errorf("e2e: first reply over TLS is not the EHLO's: %q", rep)
		}
		if slices.ContainsFunc(rep.lines, func(l string) bool { return strings.HasSuffix(l, "STARTTLS") }) {
			t.Errorf("e2e: STARTTLS offered again inside TLS: %q", rep)
		}
		c.expectCmd(t, "MAIL FROM:<sender@example.org>", "250 2.0.0")
		c.expectCmd(t, "STARTTLS", "503 5.5.1")
		c.expectCmd(t, "QUIT", "221")
	})

	t.Run("OpenConnectionsGauge", func(t *testing.T) {
		// A connection that has not sent EHLO is not a session yet,
		// but it is an open connection.
		c, err := dialSMTP(n.inbound)
		if err != nil {
			t.Fatal(err)
		}
		if rep, err := c.readReply(); err != nil || !rep.is("220") {
			t.Fatalf("e2e: greeting: %q, %v", rep, err)
		}
		n.waitMetric(10*time.Second, 1, "mxgate_smtp_connections_open", "listener", "inbound")
		c.close()
		n.waitMetric(10*time.Second, 0, "mxgate_smtp_connections_open", "listener", "inbound")
	})

	t.Run("RefusalsCounted", func(t *testing.T) {
		for _, r := range []string{"routing_address", "nested_mail", "timeout", "too_many_errors", "too_many_junk_commands", "line_too_long", "lost_connection"} {
			v, ok, err := n.metric("mxgate_messages_total", "listener", "inbound", "outcome", outcomeOf(r), "reason", r)
			if err != nil || !ok || v < 1 {
				t.Errorf("e2e: mxgate_messages_total{reason=%q} = %v (present %v, %v), want at least 1", r, v, ok, err)
			}
		}
	})
}

func outcomeOf(reason string) string {
	switch reason {
	case "timeout", "too_many_errors", "too_many_junk_commands", "lost_connection":
		return "tempfailed"
	}
	return "rejected"
}

// waitDelivery waits for the message with this Message-ID at the backend.
func waitDelivery(t *testing.T, be *smtptest.Server, messageID string) smtptest.Delivery {
	t.Helper()
	var d smtptest.Delivery
	wait.For(t, 30*time.Second, "delivery of "+messageID, func() (bool, string) {
		for _, x := range be.Deliveries() {
			if smtptest.HeaderValue(x.Data, "Message-ID") == messageID {
				d = x
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d deliveries, not this one", be.Count())
	})
	return d
}

// TestRoutingFromTrustedClient: a client in mynetworks may send to a quoted
// local part; the quotes travel on, never dropped.
func TestRoutingFromTrustedClient(t *testing.T) {
	be := smtptest.Start(t)
	n := startNode(t, nodeOptions{backends: []string{be.Addr()}, mynetworks: []string{"127.0.0.0/8"}})
	c, _ := dialHello(t, n.relay)
	c.expectCmd(t, "MAIL FROM:<app@e2e.test>", "250 2.0.0")
	c.expectCmd(t, `RCPT TO:<"odd@local"@e2e.test>`, "250 2.0.0")
	c.expectCmd(t, "DATA", "354")
	if err := c.write([]byte("Message-ID: <quoted@client.e2e.test>\r\n\r\nquoted\r\n.\r\n")); err != nil {
		t.Fatal(err)
	}
	c.expectReply(t, "end of DATA", "250 2.0.0")
	d := waitDelivery(t, be, "<quoted@client.e2e.test>")
	recv, _, _ := splitReceived(d.Data)
	if !strings.Contains(string(recv), `for <"odd@local"@e2e.test>`) {
		t.Errorf("e2e: the stored recipient lost its quotes; Received:\n%s", recv)
	}
}

// TestConnectionLimits: the backends in mynetworks are not held to
// per_ip_connections; an Internet address is, at its 21st connection.
func TestConnectionLimits(t *testing.T) {
	be := smtptest.Start(t)
	n := startNode(t, nodeOptions{
		backends:         []string{be.Addr()},
		mynetworks:       []string{"127.0.0.2/32"},
		perIPConnections: 20, // the default
		maxConnections:   1000,
	})
	dialFrom := func(src, addr string) (*rawSMTP, error) {
		d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		return newRawSMTP(c), nil
	}
	openAll := func(src, addr string, count int) ([]*rawSMTP, []smtpReply) {
		var mu sync.Mutex
		var conns []*rawSMTP
		reps := make([]smtpReply, count)
		var wg sync.WaitGroup
		for i := range count {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := dialFrom(src, addr)
				if err != nil {
					t.Errorf("e2e: dial %d from %s: %v", i, src, err)
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				rep, err := c.readReply()
				if err != nil {
					t.Errorf("e2e: greeting %d from %s: %v", i, src, err)
				}
				reps[i] = rep
			}()
		}
		wg.Wait()
		t.Cleanup(func() {
			for _, c := range conns {
				c.close()
			}
		})
		return conns, reps
	}

	// 60 concurrent sessions from a backend, all greeted and all able
	// to send.
	conns, reps := openAll("127.0.0.2", n.relay, 60)
	for i, rep := range reps {
		if !rep.is("220") {
			t.Errorf("e2e: backend connection %d: %q, want 220", i, rep)
		}
	}
	for _, c := range conns {
		c.expectCmd(t, "EHLO backend.e2e.test", "250")
	}
	for _, c := range conns {
		c.expectCmd(t, "QUIT", "221")
	}

	// From an Internet address: 20 greeted, the 21st refused.
	_, reps = openAll("127.0.0.1", n.inbound, 20)
	for i, rep := range reps {
		if !rep.is("220") {
			t.Errorf("e2e: Internet connection %d: %q, want 220", i, rep)
		}
	}
	c, err := dialFrom("127.0.0.1", n.inbound)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if rep, err := c.readReply(); err != nil || !rep.is("421 4.7.0") {
		t.Errorf("e2e: 21st Internet connection: %q, %v; want 421 4.7.0", rep, err)
	}
}

// TestShutdownClosesIdleClient: a client idle in its session when the node
// stops is told 421 at its next command, and the connection is closed.
func TestShutdownClosesIdleClient(t *testing.T) {
	be := smtptest.Start(t)
	n := startNode(t, nodeOptions{backends: []string{be.Addr()}})
	c, _ := dialHello(t, n.inbound)
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	wait.For(t, 10*time.Second, "the node to stop being ready", func() (bool, string) {
		resp, err := client.Get("http://" + n.http + "/readyz")
		if err != nil {
			return true, ""
		}
		resp.Body.Close()
		return resp.StatusCode != http.StatusOK, resp.Status
	})
	c.expectCmd(t, "MAIL FROM:<late@example.org>", "421 4.3.2")
	expectClosed(t, c, "after 421")
}
