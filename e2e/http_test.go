package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/wait"
)

// httpNode starts a node whose HTTP listener allows capConns connections
// and closes idle ones after idle (MXGATE_HTTP_IDLE_TIMEOUT and
// MXGATE_HTTP_READ_HEADER_TIMEOUT); virus scanning is off, it is not what
// these tests are about.
func httpNode(t *testing.T, capConns int, idle time.Duration) *node {
	t.Helper()
	n := newNode(t, nodeOptions{
		backends: []string{"127.0.0.1:1"},
		clamav:   "tcp:127.0.0.1:1",
		env:      []string{"MXGATE_HTTP_IDLE_TIMEOUT=" + idle.String(), "MXGATE_HTTP_READ_HEADER_TIMEOUT=" + idle.String()},
	})
	n.editConfig(
		"limits: {", fmt.Sprintf("limits: {http_connections: %d, ", capConns),
		fmt.Sprintf("clamav: {address: %q, timeout: 10s}", "tcp:127.0.0.1:1"), "clamav: {enabled: false}",
	)
	n.start()
	return n
}

// editConfig replaces old with new in the node's config file, for each
// pair; the test fails if old is not there.
func (n *node) editConfig(oldNew ...string) {
	n.t.Helper()
	data, err := os.ReadFile(n.configPath)
	if err != nil {
		n.t.Fatal(err)
	}
	s := string(data)
	for i := 0; i+1 < len(oldNew); i += 2 {
		if !strings.Contains(s, oldNew[i]) {
			n.t.Fatalf("e2e: config has no %q:\n%s", oldNew[i], s)
		}
		s = strings.Replace(s, oldNew[i], oldNew[i+1], 1)
	}
	if err := os.WriteFile(n.configPath, []byte(s), 0o644); err != nil {
		n.t.Fatal(err)
	}
}

// idleConn is a client connection left idle: silent (never sent a byte)
// or kept alive after one request; since is when it became idle.
type idleConn struct {
	c      net.Conn
	silent bool
	since  time.Time
}

// openIdle opens count connections to addr, alternately silent and kept
// alive after a GET /healthz.
func openIdle(t *testing.T, addr string, count int) []idleConn {
	t.Helper()
	out := make([]idleConn, 0, count)
	for i := 0; i < count; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("e2e: connection %d to the HTTP port: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		ic := idleConn{c: c, silent: i%2 == 0, since: time.Now()}
		if !ic.silent {
			if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: e2e\r\n\r\n"); err != nil {
				t.Fatalf("e2e: request on connection %d: %v", i, err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("e2e: response on connection %d: %v", i, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Close {
				t.Fatalf("e2e: GET /healthz on connection %d: %s, close %v; want 200 kept alive", i, resp.Status, resp.Close)
			}
			ic.since = time.Now()
		}
		out = append(out, ic)
	}
	return out
}

// waitClosed waits, for every connection at once, until the server closes
// it; it returns when each was seen closed, and fails the test for one
// still open after limit or one the server wrote to.
func waitClosed(t *testing.T, conns []idleConn, limit time.Duration) []time.Time {
	t.Helper()
	closed := make([]time.Time, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := conns[i].c
			if err := c.SetReadDeadline(time.Now().Add(limit)); err != nil {
				errs[i] = err
				return
			}
			n, err := c.Read(make([]byte, 1))
			closed[i] = time.Now()
			var ne net.Error
			switch {
			case n > 0:
				errs[i] = errors.New("the server sent data instead of closing")
			case errors.As(err, &ne) && ne.Timeout():
				errs[i] = fmt.Errorf("still open after %v", limit)
			case err == nil:
				errs[i] = errors.New("read returned nothing and no error")
			}
		}(i)
	}
	wg.Wait()
	open := 0
	for i, err := range errs {
		if err != nil {
			open++
			if open <= 5 {
				t.Errorf("e2e: idle HTTP connection %d (silent %v): %v", i, conns[i].silent, err)
			}
		}
	}
	if open > 5 {
		t.Errorf("e2e: ... %d idle HTTP connections in all not closed by the server", open)
	}
	return closed
}

// openFDs counts the node process's open file descriptors.
func (n *node) openFDs() int {
	n.t.Helper()
	n.mu.Lock()
	pid := n.cmd.Process.Pid
	n.mu.Unlock()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		n.t.Fatalf("e2e: open fds of node %s: %v", n.name, err)
	}
	return len(ents)
}

// TestHTTPIdleConnectionsClosed: connections to the HTTP port that send
// nothing, or nothing more after a request, are closed by the server
// after the idle timeout, not before and not never.
func TestHTTPIdleConnectionsClosed(t *testing.T) {
	const idle = 2 * time.Second
	n := httpNode(t, 64, idle)
	conns := openIdle(t, n.http, 16)
	closed := waitClosed(t, conns, idle+10*time.Second)
	for i, at := range closed {
		if at.IsZero() {
			continue
		}
		// The server's clock starts a little before ours: allow it 10%.
		if took := at.Sub(conns[i].since); took < idle*9/10 {
			t.Errorf("e2e: idle HTTP connection %d (silent %v) closed after %v, before the %v idle timeout", i, conns[i].silent, took, idle)
		}
	}
}

// TestHTTPConnectionFlood: far more idle connections than the cap cannot
// exhaust the process: its descriptors stay bounded, /metrics still
// answers on a new connection, SMTP still greets, and every one of the
// flood's connections is closed by the server.
func TestHTTPConnectionFlood(t *testing.T) {
	const (
		capConns = 32
		flood    = 300
		idle     = 3 * time.Second
	)
	n := httpNode(t, capConns, idle)
	before := n.openFDs()
	conns := openIdle(t, n.http, flood)

	// The process holds at most the cap of HTTP connections (+2 for
	// connections being accepted or closed while we count).
	if fds := n.openFDs(); fds > before+capConns+2 {
		t.Errorf("e2e: %d open descriptors with %d idle HTTP connections, %d before: more than the cap of %d", fds, flood, before, capConns)
	}
	// Monitoring is not locked out: a new connection takes an idle
	// one's place.
	vals, err := n.metrics()
	if err != nil {
		t.Fatalf("e2e: /metrics during the flood: %v", err)
	}
	if v := vals["mxgate_http_connections_open"]; v < 1 || v > capConns {
		t.Errorf("e2e: mxgate_http_connections_open = %v during the flood, want 1 to %d", v, capConns)
	}
	if v := vals["mxgate_http_idle_evictions_total"]; v < flood-capConns {
		t.Errorf("e2e: mxgate_http_idle_evictions_total = %v after %d connections with a cap of %d, want at least %d", v, flood, capConns, flood-capConns)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + n.http + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("e2e: /readyz during the flood: %v %v", resp, err)
	}
	resp.Body.Close()
	// SMTP is untouched.
	c, err := net.DialTimeout("tcp", n.inbound, 5*time.Second)
	if err != nil {
		t.Fatalf("e2e: SMTP connection during the HTTP flood: %v", err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	greeting, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, "220 ") {
		t.Errorf("e2e: SMTP greeting during the HTTP flood: %q, %v", greeting, err)
	}

	// Every flood connection is closed by the server: evicted, or
	// after the idle timeout.
	waitClosed(t, conns, idle+10*time.Second)
	wait.For(t, 10*time.Second, "the node's descriptors back to where they were", func() (bool, string) {
		fds := n.openFDs()
		return fds <= before+2, fmt.Sprintf("%d open, %d before the flood", fds, before)
	})
}
