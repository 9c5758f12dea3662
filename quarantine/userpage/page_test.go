package userpage

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/quarantine"
	"github.com/mxgate/mxgate/quarantine/quarantinetest"
)

type countSpooler struct{ n atomic.Int32 }

func (s *countSpooler) Spool(_ context.Context, m quarantine.Spooled) (string, error) {
	_, _ = io.Copy(io.Discard, m.Body)
	s.n.Add(1)
	return "q" + m.Entry.ID, nil
}

type pageFixture struct {
	h     *Handler
	store *quarantine.LocalStore
	spool *countSpooler
	now   time.Time
}

func newPageFixture(t *testing.T) *pageFixture {
	t.Helper()
	st, err := quarantine.OpenLocal(filepath.Join(t.TempDir(), "q.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sp := &countSpooler{}
	now := quarantinetest.T0.Add(time.Hour)
	rel := &quarantine.Releaser{Store: st, Node: "mx1", Spool: sp, Now: func() time.Time { return now }}
	f := &pageFixture{store: st, spool: sp, now: now}
	f.h = &Handler{Store: st, Signer: testSigner(t), Release: rel.Release, Now: func() time.Time { return now }}

	mine := quarantinetest.Entry("mine1", 1)
	mine.Recipients = []string{"other@example.com", "User@example.com"}
	quarantinetest.Put(t, st, mine, quarantinetest.Message("mine1", 500))
	evil := quarantinetest.Entry("evil1", 2)
	evil.Subject = `<script>alert(1)</script> "win"`
	quarantinetest.Put(t, st, evil, []byte("Subject: <script>alert(1)</script>\r\nContent-Type: text/html\r\n\r\n"+
		"<html><body><script>alert(2)</script><img src=\"http://tracker.example/x.png\"><b>hello</b> there</body></html>\r\n"))
	theirs := quarantinetest.Entry("theirs1", 3)
	theirs.Recipients = []string{"boss@example.com"}
	theirs.Subject = "the boss's secret"
	quarantinetest.Put(t, st, theirs, quarantinetest.Message("theirs1", 500))
	return f
}

func (f *pageFixture) token(t *testing.T, rcpt string, a Action, id string) string {
	return mustSign(t, f.h.Signer, Claims{Recipient: rcpt, Action: a, ID: id, Expires: f.now.Add(time.Hour)})
}

func (f *pageFixture) get(path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec
}

func (f *pageFixture) post(path, token string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", path, strings.NewReader(url.Values{"t": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	f.h.ServeHTTP(rec, req)
	return rec
}

var formRE = regexp.MustCompile(`<form method="post" action="([^"]+)"><input type="hidden" name="t" value="([^"]+)">`)

// TestPageListsOnlyTheRecipientsMail: the page lists the token's
// recipient's held mail, escaped, with a strict CSP, and nobody else's.
func TestPageListsOnlyTheRecipientsMail(t *testing.T) {
	f := newPageFixture(t)
	rec := f.get("/quarantine?t=" + f.token(t, "user@EXAMPLE.com", ActionView, ""))
	body := rec.Body.String()
	if rec.Code != 200 {
		t.Fatalf("page: %d %s", rec.Code, body)
	}
	if csp := rec.Header().Get("Content-Security-Policy"); csp != CSP || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	if rec.Header().Get("Referrer-Policy") != "no-referrer" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", rec.Header())
	}
	if !strings.Contains(body, "offer mine1") || !strings.Contains(body, "spammer@bad.example") {
		t.Errorf("the recipient's entry is missing:\n%s", body)
	}
	if strings.Contains(body, "secret") || strings.Contains(body, "theirs1") {
		t.Errorf("another recipient's entry is listed:\n%s", body)
	}
	if strings.Contains(body, "<script") || !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the subject is not escaped:\n%s", body)
	}
	if n := len(formRE.FindAllStringSubmatch(body, -1)); n != 4 {
		t.Errorf("%d forms, want release and delete for 2 entries:\n%s", n, body)
	}
	// Nothing changed by looking.
	if f.spool.n.Load() != 0 {
		t.Error("GET released something")
	}
	// The other recipient of mine1 sees it too; boss sees only theirs1.
	if b := f.get("/quarantine?t=" + f.token(t, "boss@example.com", ActionView, "")).Body.String(); strings.Contains(b, "mine1") || !strings.Contains(b, "theirs1") {
		t.Errorf("boss's page:\n%s", b)
	}
}

// TestPagePreviewIsText: an entry's page shows the text of the message,
// never its HTML, and refuses another recipient's entry.
func TestPagePreviewIsText(t *testing.T) {
	f := newPageFixture(t)
	view := f.token(t, "user@example.com", ActionView, "")
	rec := f.get("/quarantine/evil1?t=" + view)
	body := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(body, `<pre id="preview">`) || !strings.Contains(body, "hello") {
		t.Fatalf("preview: %d\n%s", rec.Code, body)
	}
	for _, bad := range []string{"<script", "<img", "tracker.example", "<b>"} {
		if strings.Contains(body, bad) {
			t.Errorf("the preview holds %q:\n%s", bad, body)
		}
	}
	if rec := f.get("/quarantine/theirs1?t=" + view); rec.Code != 404 || strings.Contains(rec.Body.String(), "secret") {
		t.Errorf("another recipient's entry: %d\n%s", rec.Code, rec.Body)
	}
	one := f.token(t, "user@example.com", ActionView, "mine1")
	if rec := f.get("/quarantine/evil1?t=" + one); rec.Code != 403 {
		t.Errorf("an entry token on another entry: %d", rec.Code)
	}
	if rec := f.get("/quarantine?t=" + one); rec.Code != 403 {
		t.Errorf("an entry token as the page: %d", rec.Code)
	}
}

// TestPageActions: release and delete need a POST with that entry's
// action token for a recipient of it; a release happens once.
func TestPageActions(t *testing.T) {
	f := newPageFixture(t)
	user := "user@example.com"
	page := f.get("/quarantine/mine1?t=" + f.token(t, user, ActionView, "")).Body.String()
	forms := formRE.FindAllStringSubmatch(page, -1)
	if len(forms) != 2 || forms[0][1] != "/quarantine/mine1/release" {
		t.Fatalf("forms %q", forms)
	}
	relTok := forms[0][2]

	if rec := f.get("/quarantine/mine1/release?t=" + relTok); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET on a release: %d", rec.Code)
	}
	bossRel := f.token(t, "boss@example.com", ActionRelease, "mine1")
	for name, tc := range map[string]struct {
		path, token string
		code        int
	}{
		"another recipient's token":  {"/quarantine/mine1/release", bossRel, 404},
		"a token for another entry":  {"/quarantine/evil1/release", relTok, 403},
		"a view token":               {"/quarantine/mine1/release", f.token(t, user, ActionView, "mine1"), 403},
		"a delete token":             {"/quarantine/mine1/release", f.token(t, user, ActionDelete, "mine1"), 403},
		"release theirs with my own": {"/quarantine/theirs1/release", f.token(t, user, ActionRelease, "theirs1"), 404},
		"tampered":                   {"/quarantine/mine1/release", relTok[:len(relTok)-2] + "AA", 403},
	} {
		if rec := f.post(tc.path, tc.token); rec.Code != tc.code {
			t.Errorf("%s: %d, want %d", name, rec.Code, tc.code)
		}
	}
	if n := f.spool.n.Load(); n != 0 {
		t.Fatalf("%d releases by refused requests", n)
	}
	if rec := f.post("/quarantine/mine1/release", relTok); rec.Code != 200 || !strings.Contains(rec.Body.String(), "Released") {
		t.Fatalf("release: %d %s", rec.Code, rec.Body)
	}
	if rec := f.post("/quarantine/mine1/release", relTok); rec.Code != http.StatusConflict {
		t.Errorf("second release: %d", rec.Code)
	}
	if n := f.spool.n.Load(); n != 1 {
		t.Errorf("spooled %d times, want 1", n)
	}
	e, _ := f.store.Get(context.Background(), "mine1")
	if e.State != quarantine.StateReleased || e.By != "user@example.com (quarantine page)" {
		t.Errorf("entry after release: %s by %q", e.State, e.By)
	}

	if rec := f.post("/quarantine/evil1/delete", f.token(t, user, ActionDelete, "evil1")); rec.Code != 200 {
		t.Errorf("delete: %d", rec.Code)
	}
	if e, _ := f.store.Get(context.Background(), "evil1"); e.State != quarantine.StateDeleted {
		t.Errorf("evil1 is %s", e.State)
	}
	if b := f.get("/quarantine?t=" + f.token(t, user, ActionView, "")).Body.String(); !strings.Contains(b, `id="empty"`) {
		t.Errorf("page after release and delete:\n%s", b)
	}
}

// TestPageExpired: an expired link is 403 and says so.
func TestPageExpired(t *testing.T) {
	f := newPageFixture(t)
	tok := mustSign(t, f.h.Signer, Claims{Recipient: "user@example.com", Action: ActionView, Expires: f.now})
	if rec := f.get("/quarantine?t=" + tok); rec.Code != 403 || !strings.Contains(rec.Body.String(), "expired") {
		t.Errorf("expired: %d %s", rec.Code, rec.Body)
	}
}

// TestPageAllow: the allow button, with its own token, puts the sender
// on the allow list and releases, once; another action's token, another
// recipient's or an entry already handled allow nothing.
func TestPageAllow(t *testing.T) {
	f := newPageFixture(t)
	var allowed []string
	f.h.Allow = func(_ context.Context, sender, comment string) error {
		allowed = append(allowed, sender+"|"+comment)
		return nil
	}
	user := "user@example.com"
	page := f.get("/quarantine/mine1?t=" + f.token(t, user, ActionView, "")).Body.String()
	forms := formRE.FindAllStringSubmatch(page, -1)
	if len(forms) != 3 || forms[2][1] != "/quarantine/mine1/allow" {
		t.Fatalf("forms %q", forms)
	}
	allowTok := forms[2][2]
	for name, tc := range map[string]struct {
		path, token string
		code        int
	}{
		"a release token":           {"/quarantine/mine1/allow", forms[0][2], 403},
		"another entry":             {"/quarantine/evil1/allow", allowTok, 403},
		"another recipient's entry": {"/quarantine/theirs1/allow", f.token(t, user, ActionAllow, "theirs1"), 404},
	} {
		if rec := f.post(tc.path, tc.token); rec.Code != tc.code {
			t.Errorf("%s: %d, want %d", name, rec.Code, tc.code)
		}
	}
	if len(allowed) != 0 || f.spool.n.Load() != 0 {
		t.Fatalf("refused requests allowed %q, spooled %d", allowed, f.spool.n.Load())
	}
	if rec := f.post("/quarantine/mine1/allow", allowTok); rec.Code != 200 || !strings.Contains(rec.Body.String(), "is allowed") {
		t.Fatalf("allow: %d %s", rec.Code, rec.Body)
	}
	e, _ := f.store.Get(context.Background(), "mine1")
	if len(allowed) != 1 || !strings.HasPrefix(allowed[0], e.Sender+"|allowed from quarantine mine1 by user@example.com") || f.spool.n.Load() != 1 {
		t.Fatalf("allowed %q, spooled %d", allowed, f.spool.n.Load())
	}
	if e.State != quarantine.StateReleased {
		t.Errorf("mine1 is %s", e.State)
	}
	if rec := f.post("/quarantine/mine1/allow", allowTok); rec.Code != http.StatusConflict || len(allowed) != 1 || f.spool.n.Load() != 1 {
		t.Errorf("second allow: %d, allowed %d, spooled %d", rec.Code, len(allowed), f.spool.n.Load())
	}
}
