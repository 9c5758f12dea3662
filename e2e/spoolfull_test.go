package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/wait"
)

// spoolOnTmpfs makes a node whose data_dir/spool is a tmpfs of size
// bytes, mounted before the node starts and unmounted after it stops;
// virus scanning is off, it is not what these tests are about.
func spoolOnTmpfs(t *testing.T, size string) (*node, string) {
	t.Helper()
	n := newNode(t, nodeOptions{backends: []string{"127.0.0.1:1"}, clamav: "tcp:127.0.0.1:1"})
	n.editConfig(fmt.Sprintf("clamav: {address: %q, timeout: 10s}", "tcp:127.0.0.1:1"), "clamav: {enabled: false}")
	spool := filepath.Join(n.dir, "data", "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", spool).CombinedOutput(); err != nil {
		t.Fatalf("e2e: mount a tmpfs on %s (the spool tests run as root): %v: %s", spool, err, out)
	}
	t.Cleanup(func() {
		n.stop()
		if out, err := exec.Command("umount", spool).CombinedOutput(); err != nil {
			t.Errorf("e2e: umount %s: %v: %s", spool, err, out)
		}
	})
	n.start()
	return n, spool
}

// readyz returns /readyz's status code and body.
func (n *node) readyz() (int, string, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + n.http + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(body), err
}

// waitReadyz waits until /readyz answers code with a body holding every
// one of want; it returns the body.
func (n *node) waitReadyz(code int, want ...string) string {
	n.t.Helper()
	var body string
	wait.For(n.t, 15*time.Second, fmt.Sprintf("/readyz %d with %q", code, want), func() (bool, string) {
		c, b, err := n.readyz()
		if err != nil {
			return false, err.Error()
		}
		body = b
		if c != code {
			return false, fmt.Sprintf("%d %q", c, b)
		}
		for _, w := range want {
			if !strings.Contains(b, w) {
				return false, fmt.Sprintf("%d %q", c, b)
			}
		}
		return true, ""
	})
	return body
}

// fill writes path until the file system says it is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	for i := 0; ; i++ {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("e2e: filling %s: %v, want ENOSPC", path, err)
			}
			return
		}
		if i > 1<<14 {
			t.Fatalf("e2e: %s still not full after 1 GiB", path)
		}
	}
}

// sendOne sends one message of about size bytes to the inbound listener
// and returns the reply to the end of DATA.
func sendOne(t *testing.T, n *node, size int) smtpReply {
	t.Helper()
	c, err := dialSMTP(n.inbound)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if _, err := c.hello(); err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.WriteString("From: sender@example.org\r\nTo: user@e2e.test\r\nSubject: spool test\r\n\r\n")
	for body.Len() < size {
		body.WriteString(strings.Repeat("spool ", 12) + "\r\n")
	}
	rep, err := c.sendMessage("sender@example.org", []string{"user@e2e.test"}, body.Bytes())
	if err != nil {
		t.Fatalf("e2e: sending a message: %v (%q)", err, rep)
	}
	return rep
}

// TestSpoolFullNotReady: a full spool makes the node say so on /readyz
// (503, with the reason) and in its metrics, a message sent then is
// answered 451 4.3.0 and counted as spool_error, and the node is ready
// and takes mail again once there is room.
func TestSpoolFullNotReady(t *testing.T) {
	n, spool := spoolOnTmpfs(t, "4m")
	if v, ok, err := n.metric("mxgate_spool_writable"); err != nil || !ok || v != 1 {
		t.Errorf("e2e: mxgate_spool_writable = %v (present %v, %v) on an empty spool, want 1", v, ok, err)
	}
	if v, ok, err := n.metric("mxgate_spool_free_bytes"); err != nil || !ok || v < 2<<20 || v > 4<<20 {
		t.Errorf("e2e: mxgate_spool_free_bytes = %v (present %v, %v) on an empty 4 MiB tmpfs", v, ok, err)
	}

	filler := filepath.Join(spool, "filler")
	fill(t, filler)
	n.waitReadyz(http.StatusServiceUnavailable, "not ready", "spool: ", "no space left on device")
	n.waitMetric(10*time.Second, 0, "mxgate_spool_writable")

	// Not ready is for the load balancer; a client that still comes
	// hears a temporary failure, never 250 and never 5xx.
	if rep := sendOne(t, n, 100<<10); !rep.is("451 4.3.0") {
		t.Errorf("e2e: end of DATA with the spool full: %q, want 451 4.3.0", rep)
	}
	if v, ok, err := n.metric("mxgate_messages_total", "listener", "inbound", "outcome", "tempfailed", "reason", "spool_error"); err != nil || !ok || v != 1 {
		t.Errorf("e2e: mxgate_messages_total{reason=spool_error} = %v (present %v, %v), want 1", v, ok, err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if body := n.waitReadyz(http.StatusOK, "ready"); strings.Contains(body, "not") {
		t.Errorf("e2e: /readyz after freeing the spool: %q", body)
	}
	n.waitMetric(10*time.Second, 1, "mxgate_spool_writable")
	if rep := sendOne(t, n, 100<<10); !rep.is("250 2.0.0") {
		t.Errorf("e2e: end of DATA after freeing the spool: %q, want 250 2.0.0", rep)
	}

	// Space left, but less than one and a half messages of the largest
	// size (limits.max_message_bytes is 1 MiB here): not ready either.
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	free, ok, err := n.metric("mxgate_spool_free_bytes")
	if err != nil || !ok {
		t.Fatalf("e2e: mxgate_spool_free_bytes: %v %v", ok, err)
	}
	if _, err := f.Write(make([]byte, int(free)-1<<20)); err != nil {
		t.Fatalf("e2e: leaving 1 MiB free in the spool: %v", err)
	}
	f.Close()
	n.waitReadyz(http.StatusServiceUnavailable, "spool: ", "bytes free in", "less than the 1572864 needed")
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	n.waitReadyz(http.StatusOK, "ready")
}

// TestSpoolReadOnlyNotReady: a spool remounted read-only makes the node
// not ready, with the reason, until it is writable again.
func TestSpoolReadOnlyNotReady(t *testing.T) {
	n, spool := spoolOnTmpfs(t, "4m")
	if out, err := exec.Command("mount", "-o", "remount,ro", spool).CombinedOutput(); err != nil {
		t.Fatalf("e2e: remount %s read-only: %v: %s", spool, err, out)
	}
	n.waitReadyz(http.StatusServiceUnavailable, "not ready", "spool: ", "read-only file system")
	n.waitMetric(10*time.Second, 0, "mxgate_spool_writable")
	if rep := sendOne(t, n, 10<<10); !rep.is("451 4.3.0") {
		t.Errorf("e2e: end of DATA with the spool read-only: %q, want 451 4.3.0", rep)
	}
	if out, err := exec.Command("mount", "-o", "remount,rw", spool).CombinedOutput(); err != nil {
		t.Fatalf("e2e: remount %s read-write: %v: %s", spool, err, out)
	}
	n.waitReadyz(http.StatusOK, "ready")
	n.waitMetric(10*time.Second, 1, "mxgate_spool_writable")
}
