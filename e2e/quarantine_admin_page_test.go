package e2e

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

// TestQuarantineAdminPage: the admin page of a real node with an admin
// token: without a login it sends to the login form, a wrong token gets
// 403, the right one a session; the list is filtered by recipient and
// escapes a hostile subject; a release without the CSRF token is 403 and
// delivers nothing, with it the message arrives at the backend exactly
// once, and a second release is 409.
func TestQuarantineAdminPage(t *testing.T) {
	be := smtptest.Start(t)
	tokFile := filepath.Join(t.TempDir(), "admin.token")
	const token = "e2e-admin-token-0123456789abcdef"
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, nodeOptions{backends: []string{be.Addr()},
		extra: "spam: {scores: {GTUBE: 9}}\nadmin: {token_file: \"" + tokFile + "\"}\n"})
	r := &reportNode{n: n, be: be, t: t}
	r.send("user@e2e.test", "From: offers@spam.e2e-quarantine.test\r\nTo: user@e2e.test\r\nSubject: <script>alert(1)</script> admin\r\n"+
		"Message-ID: <ap1@client.e2e.test>\r\n\r\n"+gtube+"\r\n")
	r.send("other@e2e.test", "From: offers@spam.e2e-quarantine.test\r\nTo: other@e2e.test\r\nSubject: other\r\n"+
		"Message-ID: <ap2@client.e2e.test>\r\n\r\n"+gtube+"\r\n")

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Timeout: 10 * time.Second, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base := "http://" + n.http
	do := func(method, path string, form url.Values) (int, string, http.Header) {
		t.Helper()
		var resp *http.Response
		var err error
		if method == "GET" {
			resp, err = client.Get(base + path)
		} else {
			resp, err = client.PostForm(base+path, form)
		}
		if err != nil {
			t.Fatalf("e2e: %s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}

	if code, _, h := do("GET", "/admin/quarantine", nil); code != http.StatusSeeOther || h.Get("Location") != "/admin/login" {
		t.Fatalf("e2e: no session: %d %q", code, h.Get("Location"))
	}
	if code, _, _ := do("POST", "/admin/login", url.Values{"token": {"wrong"}}); code != http.StatusForbidden {
		t.Fatalf("e2e: wrong token: %d", code)
	}
	if code, _, _ := do("POST", "/admin/login", url.Values{"token": {token}}); code != http.StatusSeeOther {
		t.Fatalf("e2e: login: %d", code)
	}
	code, body, h := do("GET", "/admin/quarantine?recipient=user@e2e.test", nil)
	ids := regexp.MustCompile(`data-id="([^"]+)"`).FindAllStringSubmatch(body, -1)
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if code != 200 || len(ids) != 1 || csrf == nil || !strings.HasPrefix(h.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("e2e: page: %d %q\n%s", code, ids, body)
	}
	if strings.Contains(body, "<script>alert") || !strings.Contains(body, "&lt;script&gt;") {
		t.Errorf("e2e: subject not escaped:\n%s", body)
	}
	id := ids[0][1]
	if code, _, _ := do("POST", "/admin/quarantine/"+id+"/release", url.Values{}); code != http.StatusForbidden {
		t.Errorf("e2e: release without csrf: %d", code)
	}
	if code, body, _ := do("POST", "/admin/quarantine/"+id+"/release", url.Values{"csrf": {csrf[1]}}); code != 200 {
		t.Fatalf("e2e: release: %d\n%s", code, body)
	}
	if code, _, _ := do("POST", "/admin/quarantine/"+id+"/release", url.Values{"csrf": {csrf[1]}}); code != http.StatusConflict {
		t.Errorf("e2e: second release: %d", code)
	}
	delivered := func() (k, other int) {
		for _, d := range be.Deliveries() {
			switch d.Header("Message-ID") {
			case "<ap1@client.e2e.test>":
				k++
			case "<ap2@client.e2e.test>":
				other++
			}
		}
		return
	}
	wait.For(t, 20*time.Second, "the released message at the backend", func() (bool, string) {
		k, _ := delivered()
		return k > 0, ""
	})
	// A clean message sent now is delivered after any second copy would
	// have been: then the counts are final.
	c, _ := dialHello(t, n.inbound)
	if rep, err := c.sendMessage("friend@example.org", []string{"user@e2e.test"},
		[]byte("From: friend@example.org\r\nMessage-ID: <admin-after@client.e2e.test>\r\nSubject: hello\r\n\r\nhello\r\n")); err != nil || !rep.is("250 2.0.0") {
		t.Fatalf("e2e: control message: %q %v", rep, err)
	}
	waitDelivery(t, be, "<admin-after@client.e2e.test>")
	if k, other := delivered(); k != 1 || other != 0 {
		t.Errorf("e2e: released delivered %d times, the other %d", k, other)
	}
}
