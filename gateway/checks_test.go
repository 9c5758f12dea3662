package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/internal/gatewaytest"
	"github.com/mxgate/mxgate/internal/wait"
)

// The pipeline's decisions as a client sees them, through real SMTP on
// loopback (internal/gatewaytest): the reply, mxgate_messages_total, the
// mail log, what is spooled and what the backend gets.

const testMessage = "From: <sender@example.org>\r\nSubject: pipeline\r\nMessage-ID: <%s@client.example.org>\r\n\r\nhello\r\n"

// client is a go-smtp client after EHLO.
func client(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Hello("client.example.org"); err != nil {
		t.Fatalf("EHLO: %v", err)
	}
	return c
}

// send runs one transaction, failing the test unless MAIL and every RCPT
// are accepted; it returns the reply to the end of DATA (nil for 250).
func send(t *testing.T, c *smtp.Client, from string, rcpts []string, id string) error {
	t.Helper()
	if err := c.Mail(from, nil); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatalf("RCPT %s: %v", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if _, err := fmt.Fprintf(w, testMessage, id); err != nil {
		t.Fatalf("message: %v", err)
	}
	return w.Close()
}

// wantReply fails unless err is the SMTP reply code, enhanced code and text.
func wantReply(t *testing.T, what string, err error, code int, enhanced smtp.EnhancedCode, text string) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != code || se.EnhancedCode != enhanced || se.Message != text {
		t.Fatalf("%s: reply %v, want %d %d.%d.%d %s", what, err, code, enhanced[0], enhanced[1], enhanced[2], text)
	}
}

// counted returns a function that tells how much mxgate_messages_total
// {outcome, reason} has grown since counted was called.
func counted(t *testing.T, outcome, reason string) func() float64 {
	before := gatewaytest.MessagesTotal(t, outcome, reason)
	return func() float64 { return gatewaytest.MessagesTotal(t, outcome, reason) - before }
}

// nothingSpooled fails if the refused message left anything behind.
func nothingSpooled(t *testing.T, g *gatewaytest.Gateway) {
	t.Helper()
	if files := g.SpoolFiles(t); len(files) != 0 || g.Queue.Len() != 0 {
		t.Errorf("a refused message left %d queued, files %v", g.Queue.Len(), files)
	}
}

// delivered waits for the message at the backend and returns its bytes.
func delivered(t *testing.T, g *gatewaytest.Gateway, id string) []byte {
	t.Helper()
	mid := "<" + id + "@client.example.org>"
	var data []byte
	wait.For(t, 10*time.Second, "delivery of "+mid, func() (bool, string) {
		for _, d := range g.Backend.Deliveries() {
			if d.Header("Message-ID") == mid {
				data = d.Data
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d deliveries, not this one", g.Backend.Count())
	})
	return data
}

func body(name string, fn func(context.Context, *filter.Body) filter.Result) gatewaytest.Check {
	return gatewaytest.Check{Label: name, Body: fn}
}

func refuse(a filter.Action, code int, enh [3]int, text, reason string) filter.Result {
	return filter.Result{Action: a, Reply: &filter.Reply{Code: code, Enhanced: enh, Text: text}, Reason: reason}
}

// TestBodyCheckRefuses: a body check's reject or tempfail is the reply to
// the end of DATA, counted under its reason (the check's name when it
// gives none) and logged with the queue id; the message is gone from the
// spool and never delivered, so the client's retry is the only copy.
func TestBodyCheckRefuses(t *testing.T) {
	for _, tc := range []struct {
		check, reason, outcome string
		result                 filter.Result
		code                   int
		enhanced               smtp.EnhancedCode
		text                   string
	}{
		{"virus", "virus", "rejected", refuse(filter.Reject, 554, [3]int{5, 7, 1}, "virus found: Eicar-Signature", "virus"),
			554, smtp.EnhancedCode{5, 7, 1}, "virus found: Eicar-Signature"},
		{"flaky", "flaky", "tempfailed", refuse(filter.Tempfail, 451, [3]int{4, 7, 1}, "scanner busy, try again later", ""),
			451, smtp.EnhancedCode{4, 7, 1}, "scanner busy, try again later"},
	} {
		t.Run(tc.outcome, func(t *testing.T) {
			g := gatewaytest.Start(t, gatewaytest.Options{Checks: filter.Config{Body: []filter.BodyCheck{
				body(tc.check, func(context.Context, *filter.Body) filter.Result { return tc.result }),
			}}})
			grew := counted(t, tc.outcome, tc.reason)
			err := send(t, client(t, g.Addr), "sender@example.org", []string{"user@" + gatewaytest.Domain}, tc.outcome)
			wantReply(t, "end of DATA", err, tc.code, tc.enhanced, tc.text)
			if d := grew(); d != 1 {
				t.Errorf("mxgate_messages_total{%s,%s} grew by %v, want 1", tc.outcome, tc.reason, d)
			}
			if evs := g.Events("event", "reject", "reason", tc.reason); len(evs) != 1 || evs[0]["queue_id"] == nil {
				t.Errorf("reject lines %v, want one with the queue id", evs)
			}
			nothingSpooled(t, g)
			if n := g.Backend.Count(); n != 0 {
				t.Errorf("the backend got %d messages", n)
			}
		})
	}
}

// TestBodyChecksTagAndAddHeaders: a tagged message is accepted; the checks'
// headers (in check order) follow the Received header above the client's
// bytes in the spooled message, which reaches the backend whole.
func TestBodyChecksTagAndAddHeaders(t *testing.T) {
	g := gatewaytest.Start(t, gatewaytest.Options{Checks: filter.Config{Body: []filter.BodyCheck{
		body("tagger", func(_ context.Context, b *filter.Body) filter.Result {
			return filter.Result{Action: filter.Tag, Headers: []filter.Header{{Name: "X-Test-Tag", Value: "tagged " + b.Msg.Header.Get("Subject")}}}
		}),
		body("info", func(context.Context, *filter.Body) filter.Result {
			return filter.Result{Symbols: []filter.Symbol{{Name: "TEST_INFO", Score: 0.5}}, Headers: []filter.Header{{Name: "X-Test-Info", Value: "one"}}}
		}),
	}}})
	grew := counted(t, "accepted", "none")
	if err := send(t, client(t, g.Addr), "sender@example.org", []string{"user@" + gatewaytest.Domain}, "tagged"); err != nil {
		t.Fatalf("end of DATA: %v, want 250", err)
	}
	if d := grew(); d != 1 {
		t.Errorf("mxgate_messages_total{accepted,none} grew by %v, want 1", d)
	}
	data := delivered(t, g, "tagged")
	added, ok := gatewaytest.AddedHeaders(data, "From: <sender@example.org>")
	if !ok {
		t.Fatalf("the client's bytes are not in the delivered message:\n%s", data)
	}
	names := gatewaytest.Names(added)
	if len(names) == 0 || names[0] != "Received" {
		t.Fatalf("added fields %q: want the Received header first", names)
	}
	tag, info := slices.Index(names, "X-Test-Tag"), slices.Index(names, "X-Test-Info")
	if tag < 0 || info < tag {
		t.Errorf("added fields %q: want X-Test-Tag, then X-Test-Info", names)
	} else if added[tag] != "X-Test-Tag: tagged pipeline" {
		t.Errorf("added %q, want the value the check computed from the spooled header", added[tag])
	}
	if want := fmt.Sprintf(testMessage, "tagged"); !strings.HasSuffix(string(data), want) {
		t.Errorf("the client's bytes did not arrive intact:\n%s", data)
	}
}

// TestBodyCheckPanicIsNoVerdict: a check that panics is contained: counted
// in mxgate_filter_check_panics_total, never a verdict (the message is
// accepted), and the session does not panic.
func TestBodyCheckPanicIsNoVerdict(t *testing.T) {
	g := gatewaytest.Start(t, gatewaytest.Options{Checks: filter.Config{Body: []filter.BodyCheck{
		body("boom", func(context.Context, *filter.Body) filter.Result { panic("check bug") }),
	}}})
	panics := gatewaytest.Counter(t, "mxgate_filter_check_panics_total", "check", "boom")
	sessionPanics := gatewaytest.Counter(t, "mxgate_gateway_panics_total")
	grew := counted(t, "accepted", "none")
	if err := send(t, client(t, g.Addr), "sender@example.org", []string{"user@" + gatewaytest.Domain}, "panicked"); err != nil {
		t.Fatalf("end of DATA: %v, want 250", err)
	}
	if d := gatewaytest.Counter(t, "mxgate_filter_check_panics_total", "check", "boom") - panics; d != 1 {
		t.Errorf("mxgate_filter_check_panics_total{check=boom} grew by %v, want 1", d)
	}
	if d := gatewaytest.Counter(t, "mxgate_gateway_panics_total") - sessionPanics; d != 0 {
		t.Errorf("mxgate_gateway_panics_total grew by %v: the panic reached the session", d)
	}
	if d := grew(); d != 1 {
		t.Errorf("mxgate_messages_total{accepted,none} grew by %v, want 1", d)
	}
	delivered(t, g, "panicked")
}

// TestBodyCheckTimeoutIsNoVerdict: a check still running at the stage
// deadline is cut off: its late reject is not the verdict, the message is
// accepted when the deadline passes, and the timeout is counted.
func TestBodyCheckTimeoutIsNoVerdict(t *testing.T) {
	g := gatewaytest.Start(t, gatewaytest.Options{Checks: filter.Config{StageTimeout: 200 * time.Millisecond, Body: []filter.BodyCheck{
		body("slow", func(ctx context.Context, _ *filter.Body) filter.Result {
			<-ctx.Done()
			return refuse(filter.Reject, 554, [3]int{5, 7, 1}, "too late to count", "slow")
		}),
	}}})
	timeouts := gatewaytest.Counter(t, "mxgate_filter_checks_total", "stage", "body", "check", "slow", "result", "timeout")
	grew := counted(t, "accepted", "none")
	start := time.Now()
	if err := send(t, client(t, g.Addr), "sender@example.org", []string{"user@" + gatewaytest.Domain}, "slow"); err != nil {
		t.Fatalf("end of DATA: %v, want 250", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("answered after %v, before the stage deadline", took)
	}
	if d := gatewaytest.Counter(t, "mxgate_filter_checks_total", "stage", "body", "check", "slow", "result", "timeout") - timeouts; d != 1 {
		t.Errorf("mxgate_filter_checks_total{body,slow,timeout} grew by %v, want 1", d)
	}
	if d := grew(); d != 1 {
		t.Errorf("mxgate_messages_total{accepted,none} grew by %v, want 1", d)
	}
	delivered(t, g, "slow")
}

// TestDeferredRecipientDecidedAtData: a recipient check that defers
// accepts RCPT and is asked again at the end of DATA, with AtData set;
// its tempfail there refuses the message (4xx to the final dot), counted
// under its reason, and the message is not spooled.
func TestDeferredRecipientDecidedAtData(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	grey := "grey@" + gatewaytest.Domain
	g := gatewaytest.Start(t, gatewaytest.Options{Checks: filter.Config{Rcpt: []filter.RcptCheck{
		gatewaytest.Check{Label: "bounces", Rcpt: func(_ context.Context, r *filter.Recipient) filter.Result {
			mu.Lock()
			calls = append(calls, fmt.Sprintf("%s at_data=%v", r.Rcpt, r.AtData))
			mu.Unlock()
			switch {
			case r.From != "":
				return filter.Result{}
			case !r.AtData:
				return filter.Result{Defer: true}
			case r.Rcpt == grey:
				return refuse(filter.Tempfail, 451, [3]int{4, 7, 1}, "greylisted, try again later", "greylisted")
			}
			return filter.Result{}
		}},
	}}})
	grew := counted(t, "tempfailed", "greylisted")
	ok := "ok@" + gatewaytest.Domain
	err := send(t, client(t, g.Addr), "", []string{grey, ok}, "deferred")
	wantReply(t, "end of DATA", err, 451, smtp.EnhancedCode{4, 7, 1}, "greylisted, try again later")
	mu.Lock()
	got := slices.Clone(calls)
	mu.Unlock()
	slices.Sort(got[2:]) // the calls at DATA run concurrently
	want := []string{grey + " at_data=false", ok + " at_data=false", grey + " at_data=true", ok + " at_data=true"}
	if !slices.Equal(got, want) {
		t.Errorf("check calls %q, want %q", got, want)
	}
	if d := grew(); d != 1 {
		t.Errorf("mxgate_messages_total{tempfailed,greylisted} grew by %v, want 1", d)
	}
	if evs := g.Events("event", "reject", "reason", "greylisted"); len(evs) != 1 || fmt.Sprint(evs[0]["rcpts"]) != "["+grey+"]" {
		t.Errorf("reject lines %v, want one naming %s alone", evs, grey)
	}
	nothingSpooled(t, g)

	// A sender that is not the null sender is decided at RCPT: accepted.
	if err := send(t, client(t, g.Addr), "sender@example.org", []string{grey}, "not-deferred"); err != nil {
		t.Fatalf("end of DATA: %v, want 250", err)
	}
	delivered(t, g, "not-deferred")
}

// TestRcptCheckRefusesOneRecipient: a recipient check's reject is the
// reply to that RCPT, counted once; the other recipients get the message.
func TestRcptCheckRefusesOneRecipient(t *testing.T) {
	blocked := "blocked@" + gatewaytest.Domain
	g := gatewaytest.Start(t, gatewaytest.Options{Checks: filter.Config{Rcpt: []filter.RcptCheck{
		gatewaytest.Check{Label: "rcptlist", Rcpt: func(_ context.Context, r *filter.Recipient) filter.Result {
			if r.Rcpt == blocked {
				return refuse(filter.Reject, 550, [3]int{5, 1, 1}, "no such user", "unknown_user")
			}
			return filter.Result{}
		}},
	}}})
	grew := counted(t, "rejected", "unknown_user")
	c := client(t, g.Addr)
	if err := c.Mail("sender@example.org", nil); err != nil {
		t.Fatal(err)
	}
	wantReply(t, "RCPT of the blocked recipient", c.Rcpt(blocked, nil), 550, smtp.EnhancedCode{5, 1, 1}, "no such user")
	if err := c.Rcpt("user@"+gatewaytest.Domain, nil); err != nil {
		t.Fatalf("RCPT of another recipient: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(w, testMessage, "one-rcpt"); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA: %v, want 250", err)
	}
	if d := grew(); d != 1 {
		t.Errorf("mxgate_messages_total{rejected,unknown_user} grew by %v, want 1", d)
	}
	delivered(t, g, "one-rcpt")
	for _, d := range g.Backend.Deliveries() {
		if slices.Contains(d.Rcpts, blocked) {
			t.Errorf("delivered to the refused recipient: %v", d.Rcpts)
		}
	}
}

// TestSenderAndConnChecksRefuse: a sender check's tempfail is the reply to
// MAIL; a connection check's reject is the reply to EHLO. Both are counted.
func TestSenderAndConnChecksRefuse(t *testing.T) {
	g := gatewaytest.Start(t, gatewaytest.Options{Checks: filter.Config{
		Sender: []filter.SenderCheck{gatewaytest.Check{Label: "senderlist", Sender: func(_ context.Context, s *filter.Sender) filter.Result {
			if s.From == "spammer@example.org" {
				return refuse(filter.Tempfail, 450, [3]int{4, 7, 1}, "sender deferred", "sender_deferred")
			}
			return filter.Result{}
		}}},
		Conn: []filter.ConnCheck{gatewaytest.Check{Label: "helolist", Conn: func(_ context.Context, c *filter.Conn) filter.Result {
			if c.Helo == "bad.example.org" {
				return refuse(filter.Reject, 554, [3]int{5, 7, 1}, "go away", "bad_helo")
			}
			return filter.Result{}
		}}},
	}})
	mailGrew := counted(t, "tempfailed", "sender_deferred")
	c := client(t, g.Addr)
	wantReply(t, "MAIL", c.Mail("spammer@example.org", nil), 450, smtp.EnhancedCode{4, 7, 1}, "sender deferred")
	if err := c.Mail("sender@example.org", nil); err != nil {
		t.Fatalf("MAIL from another sender: %v", err)
	}
	if d := mailGrew(); d != 1 {
		t.Errorf("mxgate_messages_total{tempfailed,sender_deferred} grew by %v, want 1", d)
	}

	connGrew := counted(t, "rejected", "bad_helo")
	bad, err := smtp.Dial(g.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	wantReply(t, "EHLO bad.example.org", bad.Hello("bad.example.org"), 554, smtp.EnhancedCode{5, 7, 1}, "go away")
	if d := connGrew(); d != 1 {
		t.Errorf("mxgate_messages_total{rejected,bad_helo} grew by %v, want 1", d)
	}
}
