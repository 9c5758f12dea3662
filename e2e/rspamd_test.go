package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

// startRspamd runs a private rspamd (Debian's package, its stock
// configuration with the workers, logs, data and DNS of this test) and
// returns its normal worker's URL.
func startRspamd(t *testing.T) (url string, stop func()) {
	t.Helper()
	bin, err := exec.LookPath("rspamd")
	if err != nil {
		t.Fatalf("e2e: rspamd not installed (Debian package rspamd; run make deps): %v", err)
	}
	dir := t.TempDir()
	for _, d := range []string{"local.d", "db", "run", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	normal := freeAddr(t)
	files := map[string]string{
		"worker-normal.inc":     fmt.Sprintf("bind_socket = %q;\ncount = 1;\n", normal),
		"worker-controller.inc": fmt.Sprintf("bind_socket = %q;\ncount = 1;\n", freeAddr(t)),
		"worker-proxy.inc":      fmt.Sprintf("bind_socket = %q;\ncount = 1;\n", freeAddr(t)),
		// No network here: a resolver that answers nothing, quickly.
		"options.inc": "dns { nameserver = [\"127.0.0.1:1\"]; timeout = 0.5s; retransmits = 1; }\n",
		"logging.inc": "type = \"file\";\nfilename = \"$LOGDIR/rspamd.log\";\nlevel = \"error\";\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, "local.d", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-f", "-i", "-u", "root", "-g", "root", "-c", "/etc/rspamd/rspamd.conf",
		"--var", "LOCAL_CONFDIR="+dir, "--var", "DBDIR="+filepath.Join(dir, "db"), "--var", "RUNDIR="+filepath.Join(dir, "run"),
		"--var", "LOGDIR="+filepath.Join(dir, "log"), "-p", filepath.Join(dir, "run", "rspamd.pid"))
	out, err := os.Create(filepath.Join(dir, "out.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("e2e: start rspamd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(done) }()
	stop = func() {
		select {
		case <-done:
			return
		default:
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	t.Cleanup(stop)
	wait.For(t, 60*time.Second, "rspamd's normal worker on "+normal, func() (bool, string) {
		if err := portFree(normal); err == nil {
			return false, "not listening yet"
		}
		return true, ""
	})
	return "http://" + normal, stop
}

// TestRspamdCheck: a real rspamd as one more scored check. Its score is the
// RSPAMD symbol; rspamd down is an error symbol, and mail flows.
func TestRspamdCheck(t *testing.T) {
	url, stopRspamd := startRspamd(t)
	be := smtptest.Start(t)
	n := startNode(t, nodeOptions{
		backends: []string{be.Addr()},
		// mxgate's own GTUBE check is off, so that rspamd's verdict
		// on GTUBE is what decides.
		extra: fmt.Sprintf("rspamd: {url: %q, timeout: 20s}\nspam: {heuristics: false}\n", url),
	})
	send := func(id, body string) smtpReply {
		t.Helper()
		c, _ := dialHello(t, n.inbound)
		rep, err := c.sendMessage("sender@example.org", []string{"user@e2e.test"},
			[]byte("From: sender@example.org\r\nMessage-ID: <"+id+"@client.e2e.test>\r\nSubject: rspamd\r\n\r\n"+body+"\r\n"))
		if err != nil && rep.code == 0 {
			t.Fatal(err)
		}
		return rep
	}
	if rep := send("rspamd-plain", "hello"); !rep.is("250 2.0.0") {
		t.Fatalf("e2e: plain message: %q", rep)
	}
	d := waitDelivery(t, be, "<rspamd-plain@client.e2e.test>")
	if st := strings.Join(headerValues(d.Data, "X-Spam-Status"), ""); !strings.Contains(st, "RSPAMD=") {
		t.Errorf("e2e: X-Spam-Status %q lacks rspamd's symbol", st)
	}
	// rspamd scores GTUBE 15: at mxgate's reject level.
	if rep := send("rspamd-gtube", gtube); !rep.is("550 5.7.1") {
		t.Errorf("e2e: GTUBE through rspamd: %q, want 550 5.7.1", rep)
	}
	stopRspamd()
	if rep := send("rspamd-down", "hello again"); !rep.is("250 2.0.0") {
		t.Fatalf("e2e: rspamd down: %q, want the mail accepted", rep)
	}
	d = waitDelivery(t, be, "<rspamd-down@client.e2e.test>")
	if st := strings.Join(headerValues(d.Data, "X-Spam-Status"), ""); !strings.Contains(st, "RSPAMD_ERROR=0") {
		t.Errorf("e2e: with rspamd down, X-Spam-Status %q lacks RSPAMD_ERROR=0", st)
	}
	if v, ok, _ := n.metric("mxgate_rspamd_requests_total", "result", "error"); !ok || v < 1 {
		t.Errorf("e2e: mxgate_rspamd_requests_total{result=error} = %v", v)
	}
}
