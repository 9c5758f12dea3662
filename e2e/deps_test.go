package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/filter/clamav/clamdtest"
)

// TestInstallDepsCheck: `scripts/install-deps.sh --check` (run by `make
// deps`, the first step of `make test`) passes on this machine, and when a
// peer lacks what the tests need it stops with exit status 1 and exactly
// one line naming the tool and what it lacks. The broken peers are small
// scripts put ahead of the real ones in PATH.
func TestInstallDepsCheck(t *testing.T) {
	root, err := clamdtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "scripts", "install-deps.sh")

	run := func(t *testing.T, fakes map[string]string) (stdout, stderr string, code int) {
		t.Helper()
		env := os.Environ()
		if len(fakes) > 0 {
			bin := t.TempDir()
			for name, body := range fakes {
				if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			env = append(env, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		}
		cmd := exec.Command(script, "--check")
		cmd.Env = env
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", script, err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err = <-done:
		case <-time.After(2 * time.Minute):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("%s --check still running after 2 minutes", script)
		}
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			code = ee.ExitCode()
		default:
			t.Fatalf("%s --check: %v", script, err)
		}
		return out.String(), errOut.String(), code
	}

	t.Run("Passes", func(t *testing.T) {
		stdout, stderr, code := run(t, nil)
		if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "install-deps: ok: ") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and one ok line", code, stdout, stderr)
		}
	})

	// A swaks that works, for the cases where another tool is broken.
	const swaksTLS = "echo '=== Socket Transport supported'\necho '=== TLS supported'\n"
	for _, tc := range []struct {
		name  string
		fakes map[string]string
		want  string
	}{
		{"SwaksWithoutTLS", map[string]string{
			// swaks --support as printed by swaks without Net::SSLeay.
			"swaks": "echo '=== Socket Transport supported'\necho '*** TLS not available: requires Net::SSLeay'\n",
		}, "install-deps: swaks: no TLS support (Net::SSLeay missing)"},
		{"PromtoolDoesNotRun", map[string]string{
			"swaks":    swaksTLS,
			"promtool": "echo 'promtool: error while loading shared libraries: libfake.so' >&2\nexit 127\n",
		}, "install-deps: promtool: does not run (promtool: error while loading shared libraries: libfake.so)"},
		{"SmtpSourceCannotSend", map[string]string{
			"swaks":       swaksTLS,
			"smtp-source": "echo 'smtp-source: fatal: connect: Connection refused' >&2\nexit 1\n",
		}, "install-deps: smtp-source: cannot send a message to smtp-sink (smtp-source: fatal: connect: Connection refused)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := run(t, tc.fakes)
			if code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if stderr != tc.want+"\n" {
				t.Errorf("stderr %q, want the one line %q", stderr, tc.want)
			}
		})
	}
}
