package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mxgate/mxgate/internal/dnstest"
	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

const gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// TestSpamFiltering: the content filter of a real node, with DNS answered
// by a test server: sender authentication (DKIM, DMARC), a DNS block list,
// the score levels and the headers that explain them.
func TestSpamFiltering(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	zone := dnstest.Zone{
		// The client, 127.0.0.1, is listed.
		"1.0.0.127.bl.e2e-dnsbl.test.": {A: []string{"127.0.0.2"}},
		// A signing domain with a strict DMARC policy.
		"s1._domainkey.signed.e2e-auth.test.": {TXT: []string{"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}},
		"_dmarc.signed.e2e-auth.test.":        {TXT: []string{"v=DMARC1; p=reject"}},
		"signed.e2e-auth.test.":               {TXT: []string{"v=spf1 -all"}},
		// A bank that rejects mail failing DMARC; it sends none from here.
		"_dmarc.bank.e2e-auth.test.": {TXT: []string{"v=DMARC1; p=reject"}},
		"bank.e2e-auth.test.":        {TXT: []string{"v=spf1 -all"}},
	}
	dnsSrv := dnstest.Start(t, zone)
	be := smtptest.Start(t)
	n := startNode(t, nodeOptions{
		backends: []string{be.Addr()},
		dns:      dnsSrv.Addr(),
		extra: "dnsbl: {skip_private: false, ip_zones: [{zone: bl.e2e-dnsbl.test, symbol: RBL_E2E, score: 5.5}]}\n" +
			"spam: {scores: {MISSING_MID: 0}}\n",
	})

	send := func(t *testing.T, from string, msg []byte) smtpReply {
		t.Helper()
		c, _ := dialHello(t, n.inbound)
		rep, err := c.sendMessage(from, []string{"user@e2e.test"}, msg)
		if err != nil && rep.code == 0 {
			t.Fatalf("e2e: send: %v", err)
		}
		return rep
	}

	t.Run("DKIMPassAndForgedResultsRemoved", func(t *testing.T) {
		msg := []byte("From: News <news@signed.e2e-auth.test>\r\nTo: user@e2e.test\r\nSubject: signed\r\n" +
			"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <signed@client.e2e.test>\r\n\r\nA signed message.\r\n")
		var signed bytes.Buffer
		if err := dkim.Sign(&signed, bytes.NewReader(msg), &dkim.SignOptions{Domain: "signed.e2e-auth.test", Selector: "s1", Signer: priv,
			HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"}}); err != nil {
			t.Fatal(err)
		}
		// A forged verdict in our name rides along, outside the signature.
		forged := append([]byte("Authentication-Results: mx1.e2e.test; dkim=pass header.d=bank.e2e-auth.test\r\nX-Spam-Status: No, score=-100\r\n"), signed.Bytes()...)
		if rep := send(t, "news@signed.e2e-auth.test", forged); !rep.is("250 2.0.0") {
			t.Fatalf("e2e: signed message: %q", rep)
		}
		d := waitDelivery(t, be, "<signed@client.e2e.test>")
		ar := headerValues(d.Data, "Authentication-Results")
		if len(ar) != 1 {
			t.Fatalf("e2e: %d Authentication-Results headers, want ours only: %q", len(ar), ar)
		}
		for _, want := range []string{"mx1.e2e.test;", "dkim=pass", "header.d=signed.e2e-auth.test", "dmarc=pass", "spf=fail"} {
			if !strings.Contains(ar[0], want) {
				t.Errorf("e2e: Authentication-Results lacks %q: %q", want, ar[0])
			}
		}
		if st := headerValues(d.Data, "X-Spam-Status"); len(st) != 1 || strings.Contains(st[0], "score=-100") {
			t.Errorf("e2e: X-Spam-Status %q: want ours only", st)
		}
	})

	t.Run("DMARCRejectFailure", func(t *testing.T) {
		msg := []byte("From: Bank <alerts@bank.e2e-auth.test>\r\nSubject: verify your account\r\n\r\nclick\r\n")
		rep := send(t, "alerts@bank.e2e-auth.test", msg)
		if !rep.is("550 5.7.1") || !strings.Contains(rep.String(), "DMARC") {
			t.Fatalf("e2e: DMARC p=reject failure: %q, want 550 5.7.1 naming DMARC", rep)
		}
	})

	t.Run("DNSBLTagged", func(t *testing.T) {
		msg := []byte("From: someone@example.org\r\nSubject: hello\r\nMessage-ID: <listed@client.e2e.test>\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\n\r\nhello\r\n")
		if rep := send(t, "someone@example.org", msg); !rep.is("250 2.0.0") {
			t.Fatalf("e2e: %q", rep)
		}
		d := waitDelivery(t, be, "<listed@client.e2e.test>")
		if smtptest.HeaderValue(d.Data, "X-Spam-Flag") != "YES" {
			t.Errorf("e2e: a message over the tag level without X-Spam-Flag: YES")
		}
		st := strings.Join(headerValues(d.Data, "X-Spam-Status"), "")
		if !strings.Contains(st, "RBL_E2E=5.5") || !strings.HasPrefix(st, "Yes,") {
			t.Errorf("e2e: X-Spam-Status %q: want Yes and the zone's symbol", st)
		}
		if smtptest.HeaderValue(d.Data, "X-Spam-Score") == "" {
			t.Error("e2e: no X-Spam-Score")
		}
		evs := n.findEvents("event", "accept", "action", "tag")
		if len(evs) == 0 || evs[len(evs)-1]["symbols"] == nil {
			t.Errorf("e2e: the accept line lacks the action and symbols: %v", evs)
		}
	})

	t.Run("GTUBERejected", func(t *testing.T) {
		rep := send(t, "someone@example.org", []byte("Subject: test\r\n\r\n"+gtube+"\r\n"))
		if !rep.is("550 5.7.1") || !strings.Contains(rep.String(), "score") {
			t.Fatalf("e2e: GTUBE: %q, want 550 5.7.1 with the score", rep)
		}
		if v, ok, _ := n.metric("mxgate_messages_total", "listener", "inbound", "outcome", "rejected", "reason", "spam"); !ok || v < 1 {
			t.Errorf("e2e: mxgate_messages_total{reason=spam} = %v", v)
		}
	})
}

// headerValues returns every value of the named header field of a
// delivered message, unfolded.
func headerValues(data []byte, name string) []string {
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	var out []string
	inField := false
	for _, line := range strings.Split(string(head), "\r\n") {
		if line != "" && (line[0] == ' ' || line[0] == '\t') {
			if inField {
				out[len(out)-1] += " " + strings.TrimSpace(line)
			}
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		inField = ok && strings.EqualFold(k, name)
		if inField {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// TestBlockListAcrossCluster: an entry added through one node's API (with
// mxgate lists add) refuses the sender on another node.
func TestBlockListAcrossCluster(t *testing.T) {
	c := newTestCluster(t, 3, "")
	waitAgreed(t, c.nodes, 3, 60*time.Second)
	out := runCLI(t, "lists", "add", "-http", "http://"+c.nodes[0].http, "-comment", "e2e", "block", "Spammer@Bad.e2e-lists.test")
	if !strings.Contains(out, "added spammer@bad.e2e-lists.test to the block list") {
		t.Fatalf("e2e: lists add said %q", out)
	}
	far := c.nodes[2]
	wait.For(t, 30*time.Second, "the entry refusing the sender on a third node", func() (bool, string) {
		conn, err := dialSMTP(far.inbound)
		if err != nil {
			return false, err.Error()
		}
		defer conn.close()
		if _, err := conn.hello(); err != nil {
			return false, err.Error()
		}
		rep, err := conn.cmd("MAIL FROM:<spammer@bad.e2e-lists.test>")
		if err != nil {
			return false, err.Error()
		}
		return rep.is("554 5.7.1"), rep.String()
	})
	ls := runCLI(t, "lists", "ls", "-http", "http://"+far.http)
	if !strings.Contains(ls, "spammer@bad.e2e-lists.test") || !strings.Contains(ls, "block") {
		t.Errorf("e2e: lists ls on another node: %q", ls)
	}
	runCLI(t, "lists", "rm", "-http", "http://"+c.nodes[1].http, "block", "spammer@bad.e2e-lists.test")
	wait.For(t, 30*time.Second, "the removal on the third node", func() (bool, string) {
		rep, err := tryMail(far.inbound, "spammer@bad.e2e-lists.test")
		if err != nil {
			return false, err.Error()
		}
		return rep.is("250 2.0.0"), rep.String()
	})
}

func tryMail(addr, from string) (smtpReply, error) {
	conn, err := dialSMTP(addr)
	if err != nil {
		return smtpReply{}, err
	}
	defer conn.close()
	if _, err := conn.hello(); err != nil {
		return smtpReply{}, err
	}
	return conn.cmd(fmt.Sprintf("MAIL FROM:<%s>", from))
}
