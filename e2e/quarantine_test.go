package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/smtptest"
)

// TestQuarantine: a real node keeps mail scored between spam.quarantine
// and spam.reject instead of delivering it, answers 250 with the
// quarantine id, lists and shows it through the CLI, and releases it
// exactly once to the backend with its X-Spam-Status, its Received and the
// release header.
func TestQuarantine(t *testing.T) {
	be := smtptest.Start(t)
	// GTUBE scores 9: over spam.quarantine (8), under spam.reject (15).
	n := startNode(t, nodeOptions{backends: []string{be.Addr()}, extra: "spam: {scores: {GTUBE: 9}}\n"})
	api := "http://" + n.http
	send := func(t *testing.T, msg string) smtpReply {
		t.Helper()
		c, _ := dialHello(t, n.inbound)
		rep, err := c.sendMessage("offers@spam.e2e-quarantine.test", []string{"user@e2e.test"}, []byte(msg))
		if err != nil && rep.code == 0 {
			t.Fatalf("e2e: send: %v", err)
		}
		return rep
	}
	clean := func(id string) string {
		return "From: friend@example.org\r\nSubject: hello\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <" + id +
			"@client.e2e.test>\r\n\r\nhello\r\n"
	}
	// deliveriesOf counts a Message-ID at the backend.
	deliveriesOf := func(mid string) int {
		k := 0
		for _, d := range be.Deliveries() {
			if smtptest.HeaderValue(d.Data, "Message-ID") == mid {
				k++
			}
		}
		return k
	}

	rep := send(t, "From: offers@spam.e2e-quarantine.test\r\nTo: user@e2e.test\r\nSubject: a quarantined offer\r\n"+
		"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <q1@client.e2e.test>\r\n\r\n"+gtube+"\r\n")
	if !rep.is("250 2.0.0") {
		t.Fatalf("e2e: quarantine-level message: %q, want 250 2.0.0", rep)
	}
	_, id, ok := strings.Cut(rep.String(), "queued as ")
	if id = strings.TrimSpace(id); !ok || id == "" {
		t.Fatalf("e2e: no queue id in %q", rep)
	}
	evs := n.findEvents("event", "accept", "quarantined", id)
	if len(evs) != 1 {
		t.Fatalf("e2e: accept lines with quarantined=%s: %v", id, evs)
	}

	// A clean message sent afterwards is delivered; the quarantined one,
	// never queued, is not.
	send(t, clean("after1"))
	waitDelivery(t, be, "<after1@client.e2e.test>")
	if k := deliveriesOf("<q1@client.e2e.test>"); k != 0 {
		t.Fatalf("e2e: the quarantined message was delivered %d times before its release", k)
	}
	if v, ok, _ := n.metric("mxgate_quarantine_writes_total", "result", "ok"); !ok || v != 1 {
		t.Errorf("e2e: mxgate_quarantine_writes_total{result=ok} = %v (%v), want 1", v, ok)
	}
	if v, ok, _ := n.metric("mxgate_quarantine_held"); !ok || v != 1 {
		t.Errorf("e2e: mxgate_quarantine_held = %v, want 1", v)
	}

	ls := runCLI(t, "quarantine", "ls", "-http", api, "-recipient", "USER@e2e.test")
	if !strings.Contains(ls, id) || !strings.Contains(ls, "held") || !strings.Contains(ls, "a quarantined offer") {
		t.Fatalf("e2e: quarantine ls: %q", ls)
	}
	if ls := runCLI(t, "quarantine", "ls", "-http", api, "-reason", "virus"); strings.Contains(ls, id) {
		t.Errorf("e2e: quarantine ls -reason virus lists the spam: %q", ls)
	}
	show := runCLI(t, "quarantine", "show", "-http", api, id)
	for _, want := range []string{"GTUBE=9", "X-Spam-Status", "Subject: a quarantined offer", gtube} {
		if !strings.Contains(show, want) {
			t.Errorf("e2e: quarantine show lacks %q:\n%s", want, show)
		}
	}
	raw := runCLI(t, "quarantine", "show", "-http", api, "-raw", id)
	if !strings.HasPrefix(raw, "Received: ") || !strings.Contains(raw, "Message-ID: <q1@client.e2e.test>") {
		t.Errorf("e2e: raw message starts %q", raw[:min(len(raw), 200)])
	}

	out := runCLI(t, "quarantine", "release", "-http", api, "-by", "e2e-admin", id)
	if !strings.Contains(out, "released "+id) {
		t.Fatalf("e2e: release said %q", out)
	}
	d := waitDelivery(t, be, "<q1@client.e2e.test>")
	if st := strings.Join(headerValues(d.Data, "X-Spam-Status"), ""); !strings.Contains(st, "GTUBE=9") {
		t.Errorf("e2e: released message's X-Spam-Status %q", st)
	}
	if rel := smtptest.HeaderValue(d.Data, "X-Quarantine-Released"); !strings.HasPrefix(rel, "by e2e-admin at ") {
		t.Errorf("e2e: X-Quarantine-Released %q", rel)
	}
	if rcv := headerValues(d.Data, "Received"); len(rcv) < 1 || !strings.Contains(strings.Join(rcv, " "), id) {
		t.Errorf("e2e: the released message lost mxgate's Received with its id %s: %q", id, rcv)
	}

	// Releasing again is refused and delivers nothing.
	cmd := exec.Command(mxgateBin, "quarantine", "release", "-http", api, id)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "already released") {
		t.Errorf("e2e: second release: %v %q, want a refusal", err, out)
	}
	send(t, clean("after2"))
	waitDelivery(t, be, "<after2@client.e2e.test>")
	if k := deliveriesOf("<q1@client.e2e.test>"); k != 1 {
		t.Errorf("e2e: the released message was delivered %d times, want 1", k)
	}
	if ls := runCLI(t, "quarantine", "ls", "-http", api, "-state", "released"); !strings.Contains(ls, id) {
		t.Errorf("e2e: released entry not listed as released: %q", ls)
	}
}

// TestQuarantineRejectedCopy: mail refused at spam.reject gets its 550,
// and a copy is kept (reason rejected) that an operator can look at.
func TestQuarantineRejectedCopy(t *testing.T) {
	be := smtptest.Start(t)
	n := startNode(t, nodeOptions{backends: []string{be.Addr()}})
	c, _ := dialHello(t, n.inbound)
	rep, _ := c.sendMessage("offers@spam.e2e-quarantine.test", []string{"user@e2e.test"},
		[]byte("Subject: refused offer\r\nMessage-ID: <r1@client.e2e.test>\r\n\r\n"+gtube+"\r\n"))
	if !rep.is("550 5.7.1") {
		t.Fatalf("e2e: GTUBE at its default score: %q, want 550 5.7.1", rep)
	}
	ls := runCLI(t, "quarantine", "ls", "-http", "http://"+n.http, "-reason", "rejected")
	if !strings.Contains(ls, "refused offer") || !strings.Contains(ls, "rejected") {
		t.Fatalf("e2e: quarantine ls -reason rejected: %q", ls)
	}
	fields := strings.Fields(strings.Split(ls, "\n")[1])
	raw := runCLI(t, "quarantine", "show", "-http", "http://"+n.http, "-raw", fields[0])
	if !strings.Contains(raw, "X-Spam-Status: Yes, score=1000") || !strings.Contains(raw, "GTUBE=1000") {
		t.Errorf("e2e: the rejected copy lacks its verdict:\n%s", raw[:min(len(raw), 600)])
	}
}

// Report as spam or ham (issue 13), through the CLI: Bayes learns each
// message once; the spam is deleted and never delivered, the ham
// released and delivered once.
func TestQuarantineReportAs(t *testing.T) {
	be := smtptest.Start(t)
	n := startNode(t, nodeOptions{backends: []string{be.Addr()}, extra: "spam: {scores: {GTUBE: 9}}\n"})
	api := "http://" + n.http
	quarantined := func(mid string) string {
		t.Helper()
		c, _ := dialHello(t, n.inbound)
		rep, err := c.sendMessage("offers@spam.e2e-quarantine.test", []string{"user@e2e.test"}, []byte(
			"From: offers@spam.e2e-quarantine.test\r\nTo: user@e2e.test\r\nSubject: an offer\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\n"+
				"Message-ID: <"+mid+"@client.e2e.test>\r\n\r\n"+gtube+"\r\n"))
		_, id, ok := strings.Cut(rep.String(), "queued as ")
		if id = strings.TrimSpace(id); err != nil || !rep.is("250 2.0.0") || !ok || id == "" {
			t.Fatalf("e2e: quarantine-level message: %q %v", rep, err)
		}
		return id
	}
	spam, ham := quarantined("rs1"), quarantined("rh1")
	if out := runCLI(t, "quarantine", "report-spam", "-http", api, "-by", "e2e-admin", spam); !strings.Contains(out, "learnt "+spam+" as spam") {
		t.Errorf("e2e: report-spam said %q", out)
	}
	if out := runCLI(t, "quarantine", "report-ham", "-http", api, "-by", "e2e-admin", ham); !strings.Contains(out, "learnt "+ham+" as ham; released") {
		t.Errorf("e2e: report-ham said %q", out)
	}
	waitDelivery(t, be, "<rh1@client.e2e.test>")
	cmd := exec.Command(mxgateBin, "quarantine", "report-ham", "-http", api, ham)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "already released") {
		t.Errorf("e2e: second report-ham: %v %q, want a refusal", err, out)
	}
	if ls := runCLI(t, "quarantine", "ls", "-http", api, "-state", "deleted"); !strings.Contains(ls, spam) {
		t.Errorf("e2e: reported spam not deleted: %q", ls)
	}
	if evs := n.findEvents("event", "quarantine_report_as"); len(evs) != 2 {
		t.Errorf("e2e: quarantine_report_as lines: %v", evs)
	}
	for _, d := range be.Deliveries() {
		if smtptest.HeaderValue(d.Data, "Message-ID") == "<rs1@client.e2e.test>" {
			t.Error("e2e: the message reported as spam was delivered")
		}
	}
}

// TestQuarantineFull (issue 13, test 6): with quarantine.max_bytes at the
// smallest value check-config takes (1MiB), quarantine-level messages fill
// it; the next candidate gets on_full's reply (451 4.3.0 for tempfail,
// 550 5.7.1 for reject), is neither kept nor delivered, and is counted in
// mxgate_quarantine_writes_total{result="full"}.
func TestQuarantineFull(t *testing.T) {
	// About 300 KB of text lines of base64 of random bytes: some 225 KB once compressed,
	// so that four or so fill 1MiB.
	raw := make([]byte, 225<<10)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	var filler strings.Builder
	for len(enc) > 76 {
		filler.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	filler.WriteString(enc + "\r\n")
	for _, tc := range []struct{ onFull, want string }{{"tempfail", "451 4.3.0"}, {"reject", "550 5.7.1"}} {
		t.Run(tc.onFull, func(t *testing.T) {
			be := smtptest.Start(t)
			n := startNode(t, nodeOptions{backends: []string{be.Addr()},
				extra: "spam: {scores: {GTUBE: 9}}\nquarantine: {max_bytes: 1MiB, on_full: " + tc.onFull + "}\n"})
			api := "http://" + n.http
			send := func(mid string) smtpReply {
				t.Helper()
				c, _ := dialHello(t, n.inbound)
				defer c.close()
				rep, err := c.sendMessage("offers@spam.e2e-quarantine.test", []string{"user@e2e.test"}, []byte(
					"From: offers@spam.e2e-quarantine.test\r\nTo: user@e2e.test\r\nSubject: filler "+mid+
						"\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <"+mid+"@client.e2e.test>\r\n\r\n"+
						gtube+"\r\n\r\n"+filler.String()))
				if err != nil && rep.code == 0 {
					t.Fatalf("e2e: send %s: %v", mid, err)
				}
				return rep
			}
			kept := 0
			var rep smtpReply
			for i := range 10 {
				if rep = send(fmt.Sprintf("full%d", i)); !rep.is("250 2.0.0") {
					break
				}
				kept++
			}
			if kept < 2 || !rep.is(tc.want) {
				t.Fatalf("e2e: after %d kept, the next candidate got %q, want %s", kept, rep, tc.want)
			}
			refused := fmt.Sprintf("full%d", kept)
			// The sender's retry meets the same answer; nothing more is kept.
			if rep := send(refused); !rep.is(tc.want) {
				t.Errorf("e2e: retry of the refused candidate: %q, want %s", rep, tc.want)
			}
			ls := runCLI(t, "quarantine", "ls", "-http", api, "-limit", "100")
			if k := strings.Count(ls, "filler full"); k != kept || strings.Contains(ls, "filler "+refused) {
				t.Errorf("e2e: %d entries listed, want the %d kept and not %s:\n%s", k, kept, refused, ls)
			}
			if v, ok, _ := n.metric("mxgate_quarantine_writes_total", "result", "full"); !ok || v != 2 {
				t.Errorf("e2e: mxgate_quarantine_writes_total{result=full} = %v (%v), want 2", v, ok)
			}
			if v, ok, _ := n.metric("mxgate_quarantine_writes_total", "result", "ok"); !ok || int(v) != kept {
				t.Errorf("e2e: mxgate_quarantine_writes_total{result=ok} = %v (%v), want %d", v, ok, kept)
			}
			if v, ok, _ := n.metric("mxgate_quarantine_bytes"); !ok || v > 1<<20 {
				t.Errorf("e2e: mxgate_quarantine_bytes = %v (%v), want at most 1MiB", v, ok)
			}
			// A clean message is still delivered; the refused one is not.
			c, _ := dialHello(t, n.inbound)
			defer c.close()
			if rep, err := c.sendMessage("friend@example.org", []string{"user@e2e.test"}, []byte("From: friend@example.org\r\n"+
				"Subject: hello\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <fullclean@client.e2e.test>\r\n\r\nhello\r\n")); !rep.is("250") {
				t.Fatalf("e2e: clean message on a full quarantine: %q %v", rep, err)
			}
			waitDelivery(t, be, "<fullclean@client.e2e.test>")
			for _, d := range be.Deliveries() {
				if strings.HasPrefix(smtptest.HeaderValue(d.Data, "Message-ID"), "<full") && smtptest.HeaderValue(d.Data, "Message-ID") != "<fullclean@client.e2e.test>" {
					t.Errorf("e2e: %s delivered", smtptest.HeaderValue(d.Data, "Message-ID"))
				}
			}
		})
	}
}
