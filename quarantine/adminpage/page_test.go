package adminpage

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

const testToken = "s3cret-admin-token"

type fixture struct {
	h       *Handler
	store   *quarantine.LocalStore
	spool   *countSpooler
	allowed []string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := quarantine.OpenLocal(filepath.Join(t.TempDir(), "q.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{store: st, spool: &countSpooler{}}
	now := quarantinetest.T0.Add(time.Hour)
	rel := &quarantine.Releaser{Store: st, Node: "mx1", Spool: f.spool, Now: func() time.Time { return now }}
	f.h = &Handler{Store: st, Release: rel.Release, Now: func() time.Time { return now },
		Login: func(_ *http.Request, tok string) bool { return tok == testToken },
		Allow: func(_ context.Context, sender, _ string) error { f.allowed = append(f.allowed, sender); return nil }}
	a := quarantinetest.Entry("aaa1", 1)
	a.Recipients = []string{"alice@example.com"}
	a.Subject = `<script>alert(1)</script>`
	quarantinetest.Put(t, st, a, quarantinetest.Message("aaa1", 300))
	b := quarantinetest.Entry("bbb1", 2)
	b.Recipients = []string{"bob@example.com"}
	b.Reason = quarantine.ReasonVirus
	quarantinetest.Put(t, st, b, quarantinetest.Message("bbb1", 300))
	return f
}

func (f *fixture) do(method, path, cookie string, form url.Values) *httptest.ResponseRecorder {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: cookieName, Value: cookie})
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

// login logs in and returns the session cookie and its CSRF token.
func (f *fixture) login(t *testing.T) (string, string) {
	t.Helper()
	rec := f.do("POST", LoginPath, "", url.Values{"token": {testToken}})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != PagePath {
		t.Fatalf("login: %d %v", rec.Code, rec.Header())
	}
	var c *http.Cookie
	for _, k := range rec.Result().Cookies() {
		if k.Name == cookieName {
			c = k
		}
	}
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.MaxAge != 12*3600 || len(c.Value) < 40 {
		t.Fatalf("cookie %+v", c)
	}
	page := f.do("GET", PagePath, c.Value, nil)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page.Body.String())
	if page.Code != 200 || m == nil {
		t.Fatalf("page: %d\n%s", page.Code, page.Body)
	}
	return c.Value, m[1]
}

func TestLogin(t *testing.T) {
	f := newFixture(t)
	if rec := f.do("GET", PagePath, "", nil); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != LoginPath {
		t.Errorf("no cookie: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	if rec := f.do("GET", PagePath, "forged", nil); rec.Code != http.StatusSeeOther {
		t.Errorf("unknown cookie: %d", rec.Code)
	}
	rec := f.do("GET", LoginPath, "", nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `id="login"`) || rec.Header().Get("Content-Security-Policy") != CSP {
		t.Errorf("login form: %d %v", rec.Code, rec.Header())
	}
	rec = f.do("POST", LoginPath, "", url.Values{"token": {"wrong"}})
	if rec.Code != http.StatusForbidden || len(rec.Result().Cookies()) != 0 {
		t.Errorf("wrong token: %d %v", rec.Code, rec.Result().Cookies())
	}
	cookie, _ := f.login(t)
	// The session expires after 12 hours.
	later := f.h.now().Add(SessionLifetime)
	f.h.Now = func() time.Time { return later }
	if rec := f.do("GET", PagePath, cookie, nil); rec.Code != http.StatusSeeOther {
		t.Errorf("expired session: %d", rec.Code)
	}
}

func TestLoopbackOnly(t *testing.T) {
	f := newFixture(t)
	f.h.LoopbackOnly = true
	req := httptest.NewRequest("GET", LoginPath, nil)
	req.RemoteAddr = "192.0.2.1:1234"
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("remote without a token: %d", rec.Code)
	}
}

func TestActionsNeedCSRF(t *testing.T) {
	f := newFixture(t)
	cookie, csrf := f.login(t)
	other, _ := f.login(t)
	for name, tc := range map[string]struct {
		cookie string
		form   url.Values
	}{
		"no session":               {"", url.Values{"csrf": {csrf}}},
		"no csrf":                  {cookie, url.Values{}},
		"wrong csrf":               {cookie, url.Values{"csrf": {csrf[:len(csrf)-2] + "xx"}}},
		"another session's cookie": {other, url.Values{"csrf": {csrf}}},
	} {
		if rec := f.do("POST", PagePath+"/aaa1/release", tc.cookie, tc.form); rec.Code != http.StatusForbidden {
			t.Errorf("%s: %d", name, rec.Code)
		}
	}
	if n := f.spool.n.Load(); n != 0 {
		t.Fatalf("refused requests released %d", n)
	}
	rec := f.do("POST", PagePath+"/aaa1/release", cookie, url.Values{"csrf": {csrf}})
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "Released aaa1") {
		t.Fatalf("release: %d\n%s", rec.Code, rec.Body)
	}
	if rec := f.do("POST", PagePath+"/aaa1/release", cookie, url.Values{"csrf": {csrf}}); rec.Code != http.StatusConflict {
		t.Errorf("second release: %d", rec.Code)
	}
	if n := f.spool.n.Load(); n != 1 {
		t.Errorf("spooled %d, want 1", n)
	}
	if rec := f.do("POST", PagePath+"/bbb1/allow", cookie, url.Values{"csrf": {csrf}}); rec.Code != 200 || len(f.allowed) != 1 || f.spool.n.Load() != 2 {
		t.Errorf("allow: %d, allowed %q, spooled %d", rec.Code, f.allowed, f.spool.n.Load())
	}
	if rec := f.do("POST", PagePath+"/nope1/delete", cookie, url.Values{"csrf": {csrf}}); rec.Code != http.StatusNotFound {
		t.Errorf("delete of nothing: %d", rec.Code)
	}
	if rec := f.do("POST", "/admin/logout", cookie, url.Values{"csrf": {csrf}}); rec.Code != http.StatusSeeOther {
		t.Errorf("logout: %d", rec.Code)
	}
	if rec := f.do("GET", PagePath, cookie, nil); rec.Code != http.StatusSeeOther {
		t.Errorf("after logout: %d", rec.Code)
	}
}

func TestFilters(t *testing.T) {
	f := newFixture(t)
	cookie, _ := f.login(t)
	ids := func(q string) []string {
		rec := f.do("GET", PagePath+q, cookie, nil)
		if rec.Code != 200 {
			t.Fatalf("%s: %d", q, rec.Code)
		}
		var out []string
		for _, m := range regexp.MustCompile(`data-id="([^"]+)"`).FindAllStringSubmatch(rec.Body.String(), -1) {
			out = append(out, m[1])
		}
		return out
	}
	for q, want := range map[string]string{
		"":                             "bbb1 aaa1",
		"?recipient=ALICE@example.com": "aaa1",
		"?reason=virus":                "bbb1",
		"?state=released":              "",
	} {
		if got := strings.Join(ids(q), " "); got != want {
			t.Errorf("%q: %q, want %q", q, got, want)
		}
	}
	rec := f.do("GET", PagePath, cookie, nil)
	if b := rec.Body.String(); strings.Contains(b, "<script>alert") || rec.Header().Get("Content-Security-Policy") != CSP {
		t.Errorf("not escaped or no CSP:\n%s", b)
	}
	if rec := f.do("GET", PagePath+"?state=bogus", cookie, nil); rec.Code != http.StatusBadRequest {
		t.Errorf("bad state: %d", rec.Code)
	}
}
