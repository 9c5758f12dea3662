package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
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
	deadline := time.Now().Add(5 * time.Second)
	for s.open() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open, want %d", s.open(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHTTPTimeouts: a connection that sends nothing, one that sends half a
// header, and one kept alive after its request are all closed by the
// server, after their timeout and not before.
func TestHTTPTimeouts(t *testing.T) {
	o := DefaultHTTPOptions()
	o.ReadHeaderTimeout = 150 * time.Millisecond
	o.IdleTimeout = 300 * time.Millisecond
	s, addr := startHTTP(t, HTTPHandler(nil), o)
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
