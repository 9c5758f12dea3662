package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/filter/clamav/clamdtest"
	"github.com/mxgate/mxgate/internal/testport"
)

// TestMakeRun runs what `make run` runs, scripts/dev-run.sh: clamd through
// scripts/clamd-test.sh with the repository's test signatures, devsink, and
// the node with deployments/dev.yaml (a copy whose ports and data_dir are
// replaced by free ones, nothing else changed). The node must become ready,
// deliver one message to devsink's directory, and print no ERROR line, nor
// any line saying it waited for clamd, from start to shutdown.
func TestMakeRun(t *testing.T) {
	root, err := clamdtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	devsink := filepath.Join(dir, "devsink")
	if out, err := exec.Command("go", "build", "-o", devsink, filepath.Join(root, "deployments", "devsink")).CombinedOutput(); err != nil {
		t.Fatalf("e2e: build devsink: %v\n%s", err, out)
	}

	addr := func() string {
		a, err := testport.Addr(false)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	inbound, relay, httpAddr, sink := addr(), addr(), addr(), addr()
	_, clamdPort, _ := net.SplitHostPort(addr())
	delivered := filepath.Join(dir, "delivered")

	// deployments/dev.yaml with only its addresses and data_dir replaced;
	// each value must be there exactly once, so that a change to the file
	// that this test does not follow fails here, not in a confusing way.
	raw, err := os.ReadFile(filepath.Join(root, "deployments", "dev.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	for _, r := range []struct{ old, new string }{
		{"data_dir: ./tmp/dev1", "data_dir: " + filepath.Join(dir, "data")},
		{`inbound: "127.0.0.1:2525"`, fmt.Sprintf("inbound: %q", inbound)},
		{`relay: "127.0.0.1:2587"`, fmt.Sprintf("relay: %q", relay)},
		{`http: "127.0.0.1:8025"`, fmt.Sprintf("http: %q", httpAddr)},
		{`backends: ["127.0.0.1:2626"]`, fmt.Sprintf("backends: [%q]", sink)},
		{`address: "tcp:127.0.0.1:3310"`, fmt.Sprintf("address: %q", "tcp:127.0.0.1:"+clamdPort)},
	} {
		if n := strings.Count(conf, r.old); n != 1 {
			t.Fatalf("e2e: deployments/dev.yaml holds %q %d times, want once (update TestMakeRun)", r.old, n)
		}
		conf = strings.Replace(conf, r.old, r.new, 1)
	}
	config := filepath.Join(dir, "dev.yaml")
	if err := os.WriteFile(config, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}

	logPath := filepath.Join(dir, "make-run.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(filepath.Join(root, "scripts", "dev-run.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"MXGATE_BIN="+mxgateBin, "DEVSINK_BIN="+devsink, "CONFIG="+config,
		"CLAMD_PORT="+clamdPort, "DEVSINK_ADDR="+sink, "DELIVERED="+delivered)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, like a terminal's job: the stop below signals
	// the script, clamd, devsink and the node together, as Ctrl-C does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("e2e: start scripts/dev-run.sh: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			return fmt.Errorf("scripts/dev-run.sh still running 30s after SIGTERM")
		}
	}
	t.Cleanup(func() {
		_ = stop()
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("e2e: output of scripts/dev-run.sh:\n%s", out)
		}
	})

	// Ready: clamd answered, the listeners are bound.
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("e2e: scripts/dev-run.sh exited before the node was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("e2e: node not ready on http://%s/readyz within 60s (last: %v)", httpAddr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// One message, as the README's swaks line sends it (no STARTTLS:
	// dev.yaml's certificate is self-signed).
	subject := fmt.Sprintf("make run %d", time.Now().UnixNano())
	c, err := smtp.Dial(inbound)
	if err != nil {
		t.Fatalf("e2e: dial %s: %v", inbound, err)
	}
	for _, step := range []func() error{
		func() error { return c.Hello("client.example.org") },
		func() error { return c.Mail("you@example.org") },
		func() error { return c.Rcpt("user@example.test") },
		func() error {
			w, err := c.Data()
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "From: <you@example.org>\r\nTo: <user@example.test>\r\nSubject: %s\r\n\r\nHello from make run.\r\n", subject)
			return w.Close()
		},
		c.Quit,
	} {
		if err := step(); err != nil {
			t.Fatalf("e2e: SMTP to %s: %v", inbound, err)
		}
	}

	// Delivered to devsink's directory.
	deadline = time.Now().Add(30 * time.Second)
	for !deliveredWith(t, delivered, "Subject: "+subject) {
		if time.Now().After(deadline) {
			t.Fatalf("e2e: the message is not in %s within 30s", delivered)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Stopped as Ctrl-C would (the script then exits with the signal's
	// status), then nothing alarming from start to end.
	if err := stop(); err != nil {
		if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) {
			t.Errorf("e2e: stopping scripts/dev-run.sh: %v", err)
		}
	}
	out, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`"level":"ERROR"`, `"event":"clamd_waiting"`, `"event":"clamd_down"`} {
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, bad) {
				t.Errorf("e2e: make run printed %s: %s", bad, line)
			}
		}
	}
	// The node's log is in what was read: the checks above were not
	// made on an empty or foreign output.
	if !bytes.Contains(out, []byte(`"event":"accept"`)) {
		t.Errorf("e2e: no accept line of the node in the output of scripts/dev-run.sh")
	}
}

// deliveredWith reports whether a file in dir holds s.
func deliveredWith(t *testing.T, dir, s string) bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err == nil && bytes.Contains(data, []byte(s)) {
			return true
		}
	}
	return false
}
