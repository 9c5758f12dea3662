package e2e

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
	"github.com/mxgate/mxgate/quarantine/userpage"
)

var (
	reportPageRE  = regexp.MustCompile(`(http://\S+/quarantine)\?t=(\S+)`)
	reportEntryRE = regexp.MustCompile(`(http://\S+/quarantine/([a-z0-9]+))\?t=(\S+)`)
	pageFormRE    = regexp.MustCompile(`<form method="post" action="([^"]+)"><input type="hidden" name="t" value="([^"]+)">`)
)

// TestQuarantineReport: with a link key and a report due (the
// MXGATE_QUARANTINE_REPORT_INTERVAL hook runs it every second), each
// recipient with new held mail gets one report through the queue, for
// their mail only; its link opens their page (a tampered or expired
// token gets 403, another recipient's message 404, a hostile subject and
// HTML body are shown escaped, as text); the page's release button (a
// POST) delivers the message once; a later report lists only what is new.
func TestQuarantineReport(t *testing.T) {
	r := startReportNode(t)
	n, be, key, send, reportsTo, waitReports := r.n, r.be, r.key, r.send, r.reportsTo, r.waitReports
	deliveriesOf := func(mid string) int {
		k := 0
		for _, d := range be.Deliveries() {
			if d.Header("Message-ID") == mid {
				k++
			}
		}
		return k
	}
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) (int, string, http.Header) {
		t.Helper()
		resp, err := client.Get(u)
		if err != nil {
			t.Fatalf("e2e: GET %s: %v", u, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	post := func(u, token string) (int, string) {
		t.Helper()
		resp, err := client.PostForm(u, url.Values{"t": {token}})
		if err != nil {
			t.Fatalf("e2e: POST %s: %v", u, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	send("user@e2e.test", "From: offers@spam.e2e-quarantine.test\r\nTo: user@e2e.test\r\nSubject: a quarantined offer\r\n"+
		"Message-ID: <rq1@client.e2e.test>\r\n\r\n"+gtube+"\r\n")
	send("other@e2e.test", "From: offers@spam.e2e-quarantine.test\r\nTo: other@e2e.test\r\nSubject: <script>alert(1)</script> hi\r\n"+
		"Message-ID: <rq2@client.e2e.test>\r\nContent-Type: text/html\r\n\r\n<html><body><script>alert(2)</script>"+
		"<img src=\"http://tracker.e2e.test/p.png\"><p>"+gtube+" visible words</p></body></html>\r\n")

	userReport := waitReports("user@e2e.test", 1)[0]
	otherReport := waitReports("other@e2e.test", 1)[0]
	if !strings.Contains(userReport, "Subject: a quarantined offer") || strings.Contains(userReport, "script") ||
		!strings.Contains(userReport, "From:    offers@spam.e2e-quarantine.test") || !strings.Contains(userReport, "Score:   9.") {
		t.Errorf("e2e: user's report:\n%s", userReport)
	}
	if strings.Contains(otherReport, "a quarantined offer") {
		t.Errorf("e2e: other's report lists user's mail:\n%s", otherReport)
	}

	// The page link.
	m := reportPageRE.FindStringSubmatch(userReport)
	if m == nil {
		t.Fatalf("e2e: no page link in the report:\n%s", userReport)
	}
	pageURL, pageTok := m[1], m[2]
	code, body, hdr := get(pageURL + "?t=" + pageTok)
	if code != 200 || !strings.Contains(body, "a quarantined offer") || strings.Contains(body, "alert") {
		t.Fatalf("e2e: user's page: %d\n%s", code, body)
	}
	if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("e2e: CSP %q", csp)
	}
	tampered := []byte(pageTok)
	tampered[5] ^= 1
	if code, _, _ := get(pageURL + "?t=" + string(tampered)); code != 403 {
		t.Errorf("e2e: tampered token: %d, want 403", code)
	}
	signer, err := userpage.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := signer.Sign(userpage.Claims{Recipient: "user@e2e.test", Action: userpage.ActionView, Expires: time.Now().Add(-time.Minute)})
	if code, body, _ := get(pageURL + "?t=" + expired); code != 403 || !strings.Contains(body, "expired") {
		t.Errorf("e2e: expired token: %d", code)
	}
	// The other recipient's page shows the hostile subject escaped and
	// the HTML body as text.
	om := reportEntryRE.FindStringSubmatch(otherReport)
	if om == nil {
		t.Fatalf("e2e: no entry link in other's report:\n%s", otherReport)
	}
	code, body, _ = get(om[1] + "?t=" + om[3])
	if code != 200 || !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt; hi") || !strings.Contains(body, "visible words") {
		t.Errorf("e2e: other's entry page: %d\n%s", code, body)
	}
	for _, bad := range []string{"<script", "<img", "tracker.e2e.test"} {
		if strings.Contains(body, bad) {
			t.Errorf("e2e: other's entry page holds %q", bad)
		}
	}
	otherID := om[2]

	// The entry link of user's report: its page's release button.
	em := reportEntryRE.FindStringSubmatch(userReport)
	if em == nil {
		t.Fatalf("e2e: no entry link in the report:\n%s", userReport)
	}
	code, body, _ = get(em[1] + "?t=" + em[3])
	forms := pageFormRE.FindAllStringSubmatch(body, -1)
	if code != 200 || len(forms) != 3 || !strings.HasSuffix(forms[0][1], "/release") || !strings.HasSuffix(forms[2][1], "/allow") {
		t.Fatalf("e2e: entry page: %d %q\n%s", code, forms, body)
	}
	releaseURL, releaseTok := "http://"+n.http+forms[0][1], forms[0][2]
	if code, _, _ := get(releaseURL + "?t=" + releaseTok); code != http.StatusMethodNotAllowed {
		t.Errorf("e2e: GET on the release: %d", code)
	}
	if code, _ := post("http://"+n.http+"/quarantine/"+otherID+"/release", releaseTok); code != 403 {
		t.Errorf("e2e: user's release token on other's message: %d, want 403", code)
	}
	mine, _ := signer.Sign(userpage.Claims{Recipient: "user@e2e.test", Action: userpage.ActionRelease, ID: otherID, Expires: time.Now().Add(time.Hour)})
	if code, _ := post("http://"+n.http+"/quarantine/"+otherID+"/release", mine); code != 404 {
		t.Errorf("e2e: user's token for other's message: %d, want 404", code)
	}
	if code, body := post(releaseURL, releaseTok); code != 200 || !strings.Contains(body, "Released") {
		t.Fatalf("e2e: release: %d\n%s", code, body)
	}
	d := waitDelivery(t, be, "<rq1@client.e2e.test>")
	if rel := d.Header("X-Quarantine-Released"); !strings.HasPrefix(rel, "by user@e2e.test (quarantine page) at ") {
		t.Errorf("e2e: X-Quarantine-Released %q", rel)
	}
	if code, _ := post(releaseURL, releaseTok); code != http.StatusConflict {
		t.Errorf("e2e: second release: %d, want 409", code)
	}

	// A new message: the next report lists it alone.
	send("user@e2e.test", "From: offers@spam.e2e-quarantine.test\r\nTo: user@e2e.test\r\nSubject: the second offer\r\n"+
		"Message-ID: <rq3@client.e2e.test>\r\n\r\n"+gtube+"\r\n")
	second := waitReports("user@e2e.test", 2)[1]
	if !strings.Contains(second, "the second offer") || strings.Contains(second, "a quarantined offer") ||
		!strings.Contains(second, "1 new message held") {
		t.Errorf("e2e: second report:\n%s", second)
	}
	// Two more report runs find nothing new; a clean message queued
	// after them is delivered after anything they could have mailed.
	runs, _, _ := n.metric("mxgate_quarantine_report_runs_total")
	n.waitAtLeast(30*time.Second, runs+2, "mxgate_quarantine_report_runs_total")
	send("user@e2e.test", "From: friend@example.org\r\nTo: user@e2e.test\r\nSubject: hello\r\nMessage-ID: <rq-after@client.e2e.test>\r\n\r\nhello\r\n")
	waitDelivery(t, be, "<rq-after@client.e2e.test>")
	if k := len(reportsTo("user@e2e.test")); k != 2 {
		t.Errorf("e2e: %d reports to user, want 2", k)
	}
	if k := len(reportsTo("other@e2e.test")); k != 1 {
		t.Errorf("e2e: %d reports to other, want 1", k)
	}
	if k, k2 := deliveriesOf("<rq1@client.e2e.test>"), deliveriesOf("<rq2@client.e2e.test>"); k != 1 || k2 != 0 {
		t.Errorf("e2e: released message delivered %d times, other's %d", k, k2)
	}
	if v, ok, _ := n.metric("mxgate_quarantine_reports_total"); !ok || v != 3 {
		t.Errorf("e2e: mxgate_quarantine_reports_total = %v, want 3", v)
	}
}

// reportNode is a node with a link key, quarantining GTUBE (score 9) and
// sending reports every second, and its backend.
type reportNode struct {
	n   *node
	be  *smtptest.Server
	key []byte
	t   *testing.T
}

func startReportNode(t *testing.T) *reportNode {
	t.Helper()
	be := smtptest.Start(t)
	key := []byte("e2e-quarantine-link-key-32-bytes!")
	keyFile := filepath.Join(t.TempDir(), "link.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, nodeOptions{backends: []string{be.Addr()},
		env:   []string{"MXGATE_QUARANTINE_REPORT_INTERVAL=1s"},
		extra: "spam: {scores: {GTUBE: 9}}\nquarantine: {link_key_file: " + `"` + keyFile + `"` + ", report: {at: \"07:00\"}}\n"})
	return &reportNode{n: n, be: be, key: key, t: t}
}

// send sends msg to rcpt; it must be answered 250.
func (r *reportNode) send(rcpt, msg string) {
	r.t.Helper()
	c, _ := dialHello(r.t, r.n.inbound)
	rep, err := c.sendMessage("offers@spam.e2e-quarantine.test", []string{rcpt}, []byte(msg))
	if err != nil || !rep.is("250 2.0.0") {
		r.t.Fatalf("e2e: send to %s: %q %v", rcpt, rep, err)
	}
}

// reportsTo are the reports the backend got for rcpt, LF line ends.
func (r *reportNode) reportsTo(rcpt string) []string {
	var out []string
	for _, d := range r.be.Deliveries() {
		if len(d.Rcpts) == 1 && d.Rcpts[0] == rcpt && strings.HasPrefix(d.Header("Subject"), "Quarantine: ") {
			if d.From != "postmaster@e2e.test" || d.Header("From") != "Mail gateway <postmaster@e2e.test>" {
				r.t.Errorf("e2e: report from %q / %q", d.From, d.Header("From"))
			}
			out = append(out, strings.ReplaceAll(string(d.Data), "\r\n", "\n"))
		}
	}
	return out
}

// waitReports waits for k reports to rcpt.
func (r *reportNode) waitReports(rcpt string, k int) []string {
	r.t.Helper()
	var got []string
	wait.For(r.t, 30*time.Second, "quarantine report to "+rcpt, func() (bool, string) {
		got = r.reportsTo(rcpt)
		return len(got) >= k, ""
	})
	return got
}
