package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/wait"
)

// startHTTP serves h with o on a loopback port; the server is shut down
// when the test ends.
func startHTTP(t *testing.T, h http.Handler, o HTTPOptions) (*HTTPServer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewHTTPServer(ln, h, o)
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

func (s *HTTPServer) open() int {
	s.ln.mu.Lock()
	defer s.ln.mu.Unlock()
	return len(s.ln.conns)
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// get sends one keep-alive request on c and reads the response.
func get(c net.Conn, path string) (*http.Response, string, error) {
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return nil, "", err
	}
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return nil, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body), err
}

// closedByServer waits up to limit for the server to close c and returns
// when it saw the close; it fails the test if c is still open, or if the
// server sent anything.
func closedByServer(t *testing.T, c net.Conn, limit time.Duration) time.Time {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(limit)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case n > 0:
		t.Fatalf("server sent data on a connection it should have closed")
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("connection still open after %v", limit)
	case err == nil:
		t.Fatalf("read returned nothing and no error")
	}
	return time.Now()
}

// TestHTTPConnectionCap: at the cap a new connection takes the place of
// the one idle longest, so idle connections cannot lock anybody out; when
// every slot is in a request, new connections are closed at once.
func TestHTTPConnectionCap(t *testing.T) {
	release := make(chan struct{})
	var inHandler sync.WaitGroup
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		inHandler.Done()
		<-release
		io.WriteString(w, "released")
	})
	o := DefaultHTTPOptions()
	o.MaxConns = 3
	s, addr := startHTTP(t, mux, o)

	// Three idle connections: one that never sent anything and two kept
	// alive after a request.
	silent := dial(t, addr)
	var kept []net.Conn
	for i := 0; i < 2; i++ {
		c := dial(t, addr)
		if resp, body, err := get(c, "/ok"); err != nil || resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("GET /ok: %v %v %q", resp, err, body)
		}
		kept = append(kept, c)
	}
	waitOpen(t, s, 3)

	// A fourth is served; the silent one, idle longest, is closed.
	fourth := dial(t, addr)
	if resp, body, err := get(fourth, "/ok"); err != nil || resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("GET /ok at the cap: %v %v %q", resp, err, body)
	}
	closedByServer(t, silent, 5*time.Second)
	if n := s.open(); n > 3 {
		t.Errorf("%d connections open, cap 3", n)
	}
	// The next one evicts the oldest kept-alive connection.
	fifth := dial(t, addr)
	if resp, _, err := get(fifth, "/ok"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /ok at the cap: %v %v", resp, err)
	}
	closedByServer(t, kept[0], 5*time.Second)

	// Every slot in a request: a new connection is closed at once,
	// without a response, and the requests in progress are untouched.
	busy := []net.Conn{kept[1], fourth, fifth}
	inHandler.Add(len(busy))
	for _, c := range busy {
		if _, err := io.WriteString(c, "GET /block HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	inHandler.Wait()
	refused := dial(t, addr)
	if _, err := io.WriteString(refused, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil && !isConnClosed(err) {
		t.Fatal(err)
	}
	closedByServer(t, refused, 5*time.Second)
	close(release)
	for _, c := range busy {
		if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("request in progress at the cap: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "released" {
			t.Errorf("request in progress answered %q", body)
		}
	}
}

func isConnClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset by peer") || strings.Contains(err.Error(), "broken pipe")
}

func waitOpen(t *testing.T, s *HTTPServer, want int) {
	t.Helper()
	wait.For(t, 5*time.Second, fmt.Sprintf("%d connections open", want), func() (bool, string) {
		n := s.open()
		return n == want, fmt.Sprintf("%d open", n)
	})
}

// TestHTTPTimeouts: a connection that sends nothing, one that sends half a
// header, and one kept alive after its request are all closed by the
// server, after their timeout and not before.
func TestHTTPTimeouts(t *testing.T) {
	o := DefaultHTTPOptions()
	o.ReadHeaderTimeout = 150 * time.Millisecond
	o.IdleTimeout = 300 * time.Millisecond
	s, addr := startHTTP(t, NewAdminMux("", nil), o)
	if s.srv.ReadTimeout != o.ReadTimeout || s.srv.WriteTimeout != o.WriteTimeout || s.srv.ReadTimeout <= 0 || s.srv.WriteTimeout <= 0 {
		t.Errorf("server timeouts read %v write %v, want %v and %v", s.srv.ReadTimeout, s.srv.WriteTimeout, o.ReadTimeout, o.WriteTimeout)
	}

	start := time.Now()
	silent := dial(t, addr)
	half := dial(t, addr)
	if _, err := io.WriteString(half, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	kept := dial(t, addr)
	if resp, body, err := get(kept, "/healthz"); err != nil || resp.StatusCode != 200 || body != "ok\n" {
		t.Fatalf("GET /healthz: %v %v %q", resp, err, body)
	}
	answered := time.Now()
	for name, c := range map[string]net.Conn{"silent": silent, "half header": half} {
		if took := closedByServer(t, c, 5*time.Second).Sub(start); took < o.ReadHeaderTimeout {
			t.Errorf("%s connection closed after %v, before the header timeout", name, took)
		}
	}
	if took := closedByServer(t, kept, 5*time.Second).Sub(answered); took < o.IdleTimeout-50*time.Millisecond {
		t.Errorf("kept-alive connection closed %v after its response, before the idle timeout", took)
	}
	waitOpen(t, s, 0)
}

// TestHTTPErrorLogIsJSON: net/http's own error log lines reach the JSON
// log with an event, not stderr as plain text.
func TestHTTPErrorLogIsJSON(t *testing.T) {
	var buf safeBuffer
	o := DefaultHTTPOptions()
	o.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("/twice", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.WriteHeader(500) // "http: superfluous response.WriteHeader call"
	})
	_, addr := startHTTP(t, mux, o)
	resp, _, err := get(dial(t, addr), "/twice")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /twice: %v %v", resp, err)
	}
	line := buf.String()
	if !strings.Contains(line, `"event":"http_error"`) || !strings.Contains(line, "superfluous response.WriteHeader") || !strings.HasPrefix(line, "{") {
		t.Errorf("log %q: want a JSON line with event http_error and net/http's message", line)
	}
}

type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// serve runs one request through h from remote and returns the recorder.
func serve(h http.Handler, method, path, remote, auth string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	req.RemoteAddr = remote
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestAdminMuxRoutes: one mux serves health, metrics and the registered
// API routes; unknown paths are 404 and a known path with another method
// 405, as net/http's mux answers them.
func TestAdminMuxRoutes(t *testing.T) {
	m := NewAdminMux("", nil)
	m.HandleAPI("GET /api/v1/test/items", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"items": "all"})
	}), Anyone)
	m.HandleAPI("POST /api/v1/test/change", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"changed": "yes"})
	}), AdminOnly("changing a test"))
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/healthz", 200, "ok\n"},
		{"GET", "/readyz", 200, "ready\n"},
		{"GET", "/metrics", 200, "mxgate_http_connections_open"},
		{"GET", "/api/v1/test/items", 200, "{\n  \"items\": \"all\"\n}\n"},
		{"POST", "/api/v1/test/change", 200, `"changed": "yes"`},
		{"GET", "/api/v1/test/change", 405, ""},
		{"POST", "/api/v1/test/items", 405, ""},
		{"POST", "/healthz", 405, ""},
		{"GET", "/api/v1/test/other", 404, ""},
		{"GET", "/", 404, ""},
	} {
		rec := serve(m, tc.method, tc.path, "127.0.0.1:1234", "")
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.body) {
			t.Errorf("%s %s: %d %q, want %d with %q", tc.method, tc.path, rec.Code, rec.Body, tc.code, tc.body)
		}
	}
	if ct := serve(m, "GET", "/api/v1/test/items", "192.0.2.7:1", "").Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("API Content-Type %q", ct)
	}
}

// TestAdminMuxAdminCheck: an AdminOnly route runs only with the right
// bearer token when one is configured, and only from loopback when none
// is; a refusal is 403 with a JSON error naming the operation. Routes
// open to anyone need nothing.
func TestAdminMuxAdminCheck(t *testing.T) {
	const token = "0123456789abcdef0123"
	for _, tc := range []struct {
		name, token, remote, auth string
		allowed                   bool
	}{
		{"token", token, "192.0.2.7:1", "Bearer " + token, true},
		{"token from loopback", token, "127.0.0.1:1", "Bearer " + token, true},
		{"wrong token", token, "192.0.2.7:1", "Bearer wrong", false},
		{"token prefix", token, "192.0.2.7:1", "Bearer " + token[:10], false},
		{"other scheme", token, "192.0.2.7:1", "Basic " + token, false},
		{"loopback without the token", token, "127.0.0.1:1", "", false},
		{"no token, loopback", "", "127.0.0.1:1", "", true},
		{"no token, loopback v6", "", "[::1]:1", "", true},
		{"no token, mapped loopback", "", "[::ffff:127.0.0.1]:1", "", true},
		{"no token, remote", "", "192.0.2.7:1", "", false},
		{"no token, remote with a token", "", "192.0.2.7:1", "Bearer " + token, false},
		{"no token, bad remote address", "", "garbage", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ran := false
			m := NewAdminMux(tc.token, nil)
			m.HandleAPI("POST /api/v1/x/remove", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ran = true
				WriteJSON(w, http.StatusOK, map[string]string{"removed": "x"})
			}), AdminOnly("removing an x"))
			m.HandleAPI("GET /api/v1/x/list", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				WriteJSON(w, http.StatusOK, map[string]string{"list": "x"})
			}), Anyone)
			rec := serve(m, "POST", "/api/v1/x/remove", tc.remote, tc.auth)
			if tc.allowed {
				if rec.Code != http.StatusOK || !ran {
					t.Errorf("refused: %d %s", rec.Code, rec.Body)
				}
			} else {
				var e APIError
				if rec.Code != http.StatusForbidden || ran || json.Unmarshal(rec.Body.Bytes(), &e) != nil ||
					e.Error != "removing an x needs the admin token (admin.token_file), or a request from loopback when none is configured" {
					t.Errorf("allowed or wrong refusal: %d ran=%v %s", rec.Code, ran, rec.Body)
				}
			}
			if rec := serve(m, "GET", "/api/v1/x/list", tc.remote, tc.auth); rec.Code != http.StatusOK {
				t.Errorf("open route: %d", rec.Code)
			}
		})
	}
}

// TestAdminMuxChangingRouteNeedsAdmin: a route open to anyone must be a
// GET or HEAD route; anything else is refused at registration.
func TestAdminMuxChangingRouteNeedsAdmin(t *testing.T) {
	for _, pattern := range []string{"POST /api/v1/x", "DELETE /api/v1/x", "/api/v1/x"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%q registered open to anyone", pattern)
				}
			}()
			NewAdminMux("", nil).HandleAPI(pattern, http.NotFoundHandler(), Anyone)
		}()
	}
}

// TestAdminMuxSignedUser: a SignedUser route takes any method without the
// admin token, from anywhere, and its handler alone decides (here, on a
// "t" parameter standing for the signed token).
func TestAdminMuxSignedUser(t *testing.T) {
	m := NewAdminMux("0123456789abcdef0123", nil)
	ran := 0
	m.HandleAPI("POST /user/act", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("t") != "good" {
			http.Error(w, "bad token", http.StatusForbidden)
			return
		}
		ran++
		w.WriteHeader(http.StatusOK)
	}), SignedUser)
	for _, tc := range []struct {
		method, path string
		code, ran    int
	}{
		{"POST", "/user/act?t=good", 200, 1},
		{"POST", "/user/act?t=bad", 403, 1},
		{"POST", "/user/act", 403, 1},
		{"GET", "/user/act?t=good", 405, 1},
	} {
		if rec := serve(m, tc.method, tc.path, "192.0.2.7:1", ""); rec.Code != tc.code || ran != tc.ran {
			t.Errorf("%s %s: %d (handler ran %d times), want %d (%d)", tc.method, tc.path, rec.Code, ran, tc.code, tc.ran)
		}
	}
}

// TestAdminMuxReadiness: /readyz is 503 while a probe fails, listing each
// failing probe by name with its reason, in order, and not the others.
func TestAdminMuxReadiness(t *testing.T) {
	clamd, spool := errors.New("clamd not answering"), error(nil)
	m := NewAdminMux("", []ReadinessProbe{
		{Name: "smtp", Ready: func() error { return nil }},
		{Name: "clamd", Ready: func() error { return clamd }},
		{Name: "spool", Ready: func() error { return spool }},
	})
	rec := serve(m, "GET", "/readyz", "192.0.2.7:1", "")
	if rec.Code != http.StatusServiceUnavailable || rec.Body.String() != "not ready\nclamd: clamd not answering\n" {
		t.Errorf("one probe failing: %d %q", rec.Code, rec.Body)
	}
	if rec := serve(m, "GET", "/healthz", "192.0.2.7:1", ""); rec.Code != http.StatusOK || rec.Body.String() != "ok\n" {
		t.Errorf("/healthz while not ready: %d %q", rec.Code, rec.Body)
	}
	spool = errors.New("/var/lib/mxgate/spool is on a read-only file system")
	rec = serve(m, "GET", "/readyz", "192.0.2.7:1", "")
	if want := "not ready\nclamd: clamd not answering\nspool: /var/lib/mxgate/spool is on a read-only file system\n"; rec.Code != http.StatusServiceUnavailable || rec.Body.String() != want {
		t.Errorf("two probes failing: %d %q, want %q", rec.Code, rec.Body, want)
	}
	clamd, spool = nil, nil
	if rec = serve(m, "GET", "/readyz", "192.0.2.7:1", ""); rec.Code != http.StatusOK || rec.Body.String() != "ready\n" {
		t.Errorf("every probe passing: %d %q", rec.Code, rec.Body)
	}
}

// TestAdminLogin: a login form's token is the admin token; with none
// configured, only loopback passes, whatever the form holds.
func TestAdminLogin(t *testing.T) {
	req := func(remote string) *http.Request {
		r := httptest.NewRequest("POST", "/admin/login", nil)
		r.RemoteAddr = remote
		return r
	}
	m := NewAdminMux("tok", nil)
	if !m.AdminTokenSet() || !m.AdminLogin(req("192.0.2.1:1"), "tok") || m.AdminLogin(req("127.0.0.1:1"), "tokx") || m.AdminLogin(req("127.0.0.1:1"), "") {
		t.Error("with a token")
	}
	m = NewAdminMux("", nil)
	if m.AdminTokenSet() || !m.AdminLogin(req("[::1]:1"), "") || m.AdminLogin(req("192.0.2.1:1"), "anything") {
		t.Error("without a token")
	}
}
