package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

// dsnStatus is one per-recipient block of a message/delivery-status part.
type dsnStatus struct {
	finalRecipient, action, status string
}

// parseDSN checks data is a multipart/report of report-type
// delivery-status (RFC 3464, RFC 6522) and returns its recipient blocks.
func parseDSN(data []byte) ([]dsnStatus, error) {
	mr, err := mail.CreateReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("not a MIME message: %w", err)
	}
	ct, params, err := mr.Header.ContentType()
	if err != nil {
		return nil, err
	}
	if ct != "multipart/report" || !strings.EqualFold(params["report-type"], "delivery-status") {
		return nil, fmt.Errorf("Content-Type %s %v, want multipart/report; report-type=delivery-status", ct, params)
	}
	var out []dsnStatus
	found := false
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		pct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if pct != "message/delivery-status" {
			continue
		}
		found = true
		body, err := io.ReadAll(p.Body)
		if err != nil {
			return nil, err
		}
		// Per-message fields, then one block per recipient, each a
		// header-like group separated by an empty line.
		r := textproto.NewReader(bufio.NewReader(bytes.NewReader(body)))
		if _, err := r.ReadMIMEHeader(); err != nil && err != io.EOF {
			return nil, fmt.Errorf("per-message fields: %w", err)
		}
		for {
			h, err := r.ReadMIMEHeader()
			if len(h) > 0 {
				out = append(out, dsnStatus{
					finalRecipient: h.Get("Final-Recipient"),
					action:         h.Get("Action"),
					status:         h.Get("Status"),
				})
			}
			if err != nil {
				break
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("no message/delivery-status part")
	}
	return out, nil
}

// TestDSNOnPermanentFailure: a backend's 550 for one recipient bounces to
// the sender (through the transport for the sender's domain) while the
// other recipient gets the message; a message from the null sender never
// causes a bounce.
func TestDSNOnPermanentFailure(t *testing.T) {
	be := smtptest.Start(t)
	be.RejectRcpt("bad@e2e.test", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"})
	sink := smtptest.Start(t) // example.org's mail server
	n := startNode(t, nodeOptions{
		backends:   []string{be.Addr()},
		transports: map[string]string{"example.org": "[127.0.0.1]:" + portOf(sink.Addr())},
	})

	c, _ := dialHello(t, n.inbound)
	orig := []byte("From: <sender@example.org>\r\nTo: <ok@e2e.test>, <bad@e2e.test>\r\nSubject: half bounces\r\nMessage-ID: <dsn-orig@client.e2e.test>\r\n\r\nhello\r\n")
	rep, err := c.sendMessage("sender@example.org", []string{"ok@e2e.test", "bad@e2e.test"}, orig)
	if err != nil || !rep.is("250 2.0.0") {
		t.Fatalf("e2e: sending: %q, %v", rep, err)
	}

	wait.For(t, 30*time.Second, "the message to reach ok@e2e.test", func() (bool, string) {
		return be.ByMessageID()["<dsn-orig@client.e2e.test>"] > 0, fmt.Sprintf("%d deliveries", be.Count())
	})
	for _, d := range be.Deliveries() {
		if smtptest.HeaderValue(d.Data, "Message-ID") == "<dsn-orig@client.e2e.test>" && strings.Join(d.Rcpts, ",") != "ok@e2e.test" {
			t.Errorf("e2e: delivered to %v, want only ok@e2e.test", d.Rcpts)
		}
	}

	wait.For(t, 30*time.Second, "a DSN at example.org's server", func() (bool, string) {
		return sink.Count() > 0, "none yet"
	})
	dsns := sink.Deliveries()
	if len(dsns) != 1 {
		t.Fatalf("e2e: example.org's server got %d messages, want 1 DSN", len(dsns))
	}
	d := dsns[0]
	if d.From != "" || strings.Join(d.Rcpts, ",") != "sender@example.org" {
		t.Errorf("e2e: DSN envelope %q -> %v, want <> -> sender@example.org", d.From, d.Rcpts)
	}
	statuses, err := parseDSN(d.Data)
	if err != nil {
		t.Fatalf("e2e: DSN: %v\n%s", err, d.Data)
	}
	if len(statuses) != 1 {
		t.Fatalf("e2e: DSN names %d recipients, want 1 (bad@e2e.test): %+v", len(statuses), statuses)
	}
	st := statuses[0]
	if !strings.EqualFold(strings.ReplaceAll(st.finalRecipient, " ", ""), "rfc822;bad@e2e.test") ||
		!strings.EqualFold(st.action, "failed") || st.status != "5.1.1" {
		t.Errorf("e2e: DSN recipient block %+v, want Final-Recipient: rfc822; bad@e2e.test, Action: failed, Status: 5.1.1", st)
	}

	// The null sender: the failure is final and nobody is told.
	rep, err = c.sendMessage("", []string{"bad@e2e.test"},
		[]byte("From: <MAILER-DAEMON@example.org>\r\nSubject: a bounce that bounces\r\nMessage-ID: <dsn-null@client.e2e.test>\r\n\r\nhello\r\n"))
	if err != nil {
		t.Fatalf("e2e: sending from <>: %v", err)
	}
	qid, ok := queueIDOf(rep)
	if !ok {
		t.Fatalf("e2e: sending from <>: %q", rep)
	}
	c.expectCmd(t, "QUIT", "221")
	wait.For(t, 30*time.Second, "the failure of the null sender's message in the mail log", func() (bool, string) {
		evs := n.findEvents("event", "deliver", "queue_id", qid, "result", "failed")
		return len(evs) > 0, fmt.Sprintf("%d events", len(evs))
	})
	// A DSN would be queued before the failure is recorded and stay
	// queued until delivered: an empty queue means there is none.
	n.waitMetric(30*time.Second, 0, "mxgate_queue_messages")
	if evs := n.findEvents("event", "bounce", "queue_id", qid); len(evs) != 0 {
		t.Errorf("e2e: the null sender's failure caused a bounce: %v", evs)
	}
	if c := sink.Count(); c != 1 {
		t.Errorf("e2e: example.org's server got %d messages, want only the first DSN", c)
	}
}

func portOf(addr string) string {
	return addr[strings.LastIndexByte(addr, ':')+1:]
}
