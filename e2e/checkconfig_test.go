package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runMxgate runs the binary with args and returns its exit code and output.
func runMxgate(t *testing.T, timeout time.Duration, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, mxgateBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("e2e: mxgate %v still running after %v; stderr:\n%s", args, timeout, errb.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("e2e: mxgate %v: %v", args, err)
	}
	return code, out.String(), errb.String()
}

// TestCheckConfig: check-config accepts a good file and names the file,
// the key and the problem for each bad one; serve refuses a bad file
// before it listens.
func TestCheckConfig(t *testing.T) {
	// A config as the other tests write it; nothing is started.
	n := newNode(t, nodeOptions{backends: []string{"127.0.0.1:2525"}, clamav: "tcp:127.0.0.1:3310"})
	good, err := os.ReadFile(n.configPath)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("Good", func(t *testing.T) {
		code, out, errOut := runMxgate(t, 30*time.Second, "check-config", "-config", n.configPath)
		if code != 0 || !strings.Contains(out, "ok") {
			t.Fatalf("e2e: check-config on a good file: exit %d, stdout %q, stderr %q; want exit 0 and ok", code, out, errOut)
		}
	})

	// Each mutation introduces one problem; the output must have one
	// line naming the file, the key and what is wrong.
	type problem struct {
		name, key, why string
		edit           func(string) string
	}
	replace := func(old, new string) func(string) string {
		return func(s string) string {
			if !strings.Contains(s, old) {
				t.Fatalf("e2e: config has no %q:\n%s", old, s)
			}
			return strings.Replace(s, old, new, 1)
		}
	}
	dir := t.TempDir()
	certFile, _ := writeSelfSigned(t, dir)
	appendLine := func(line string) func(string) string {
		return func(s string) string { return s + line + "\n" }
	}
	problems := []problem{
		{"UnknownKey", "limits.max_mesage_bytes", "unknown key", replace("max_message_bytes:", "max_mesage_bytes:")},
		{"BadDuration", "queue.retry_min", "5x", replace("retry_min: 1s", "retry_min: 5x")},
		{"BadCIDR", "mynetworks[0]", "10.9.9.0/33", replace(`"10.9.9.0/24"`, `"10.9.9.0/33"`)},
		{"BadBackendAddress", "backends[0]", "127.0.0.1", replace(`"127.0.0.1:2525"`, `"127.0.0.1"`)},
		// 213504 days is more than int64 nanoseconds: it used to wrap
		// around to 25 minutes and pass.
		{"DurationOverflow", "limits.command_timeout", "out of range", replace("limits: {", "limits: {command_timeout: 213504d, ")},
		{"DurationTooLong", "greylist.lifetime", "want 1h to 365d", replace("greylist: {enabled: false}", "greylist: {enabled: false, lifetime: 400d}")},
		{"DataDirIsAFile", "node.data_dir", "is a file, not a directory", replace(strconv.Quote(filepath.Join(n.dir, "data")), strconv.Quote(n.configPath))},
		// Root reads any file whatever its mode: a directory stands
		// for an unreadable key.
		{"TLSKeyUnreadable", "tls.key", "not a regular file", appendLine(fmt.Sprintf("tls: {cert: %q, key: %q}", certFile, dir))},
	}
	for _, p := range problems {
		t.Run(p.name, func(t *testing.T) {
			path := filepath.Join(dir, p.name+".yaml")
			if err := os.WriteFile(path, []byte(p.edit(string(good))), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := runMxgate(t, 30*time.Second, "check-config", "-config", path)
			lines := nonEmptyLines(out + errOut)
			if code == 0 {
				t.Fatalf("e2e: check-config exited 0 on a file with a bad %s; output %q", p.key, lines)
			}
			if len(lines) != 1 {
				t.Errorf("e2e: check-config printed %d lines for one problem, want 1: %q", len(lines), lines)
			}
			for _, l := range lines {
				if !strings.Contains(l, path) || !strings.Contains(l, p.key) || !strings.Contains(l, p.why) {
					t.Errorf("e2e: line %q does not name the file %s, the key %s and the problem (%s)", l, path, p.key, p.why)
				}
			}
		})
	}

	t.Run("AllInOneFile", func(t *testing.T) {
		s := string(good)
		for _, p := range problems {
			s = p.edit(s)
		}
		path := filepath.Join(dir, "all.yaml")
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := runMxgate(t, 30*time.Second, "check-config", "-config", path)
		lines := nonEmptyLines(out + errOut)
		if code == 0 {
			t.Fatalf("e2e: check-config exited 0; output %q", lines)
		}
		for _, p := range problems {
			found := false
			for _, l := range lines {
				found = found || strings.Contains(l, path) && strings.Contains(l, p.key)
			}
			if !found {
				t.Errorf("e2e: no line names %s; output: %q", p.key, lines)
			}
		}
		// One line per problem: every section is checked, and a key
		// that did not decode is not reported again by its section.
		if len(lines) != len(problems) {
			t.Errorf("e2e: %d lines for %d problems: %q", len(lines), len(problems), lines)
		}
	})

	t.Run("ServeRefusesBeforeListening", func(t *testing.T) {
		path := filepath.Join(dir, "serve-bad.yaml")
		if err := os.WriteFile(path, []byte(problems[1].edit(string(good))), 0o644); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		code, out, errOut := runMxgate(t, 30*time.Second, "serve", "-config", path)
		if code == 0 {
			t.Fatalf("e2e: serve exited 0 with a bad config; output %q", out+errOut)
		}
		if !strings.Contains(errOut, "queue.retry_min") {
			t.Errorf("e2e: serve's error does not name queue.retry_min: %q", errOut)
		}
		if strings.Contains(errOut, `"event":"start"`) {
			t.Errorf("e2e: serve logged a start with a bad config: %q", errOut)
		}
		for _, addr := range []string{n.inbound, n.relay, n.http} {
			if err := portFree(addr); err != nil {
				t.Errorf("e2e: port %s not free after serve refused its config: %v", addr, err)
			}
		}
		t.Logf("e2e: serve with a bad config exited %d after %v", code, time.Since(start).Round(time.Millisecond))
	})
}

// TestCheckConfigTLSKeyMismatch: a STARTTLS key that is not the
// certificate's is named by check-config, and a good pair passes.
func TestCheckConfigTLSKeyMismatch(t *testing.T) {
	n := newNode(t, nodeOptions{backends: []string{"127.0.0.1:2525"}, clamav: "tcp:127.0.0.1:3310"})
	good, err := os.ReadFile(n.configPath)
	if err != nil {
		t.Fatal(err)
	}
	certA, keyA := writeSelfSigned(t, t.TempDir())
	_, keyB := writeSelfSigned(t, t.TempDir())
	for _, tc := range []struct {
		name, key string
		ok        bool
	}{{"Matching", keyA, true}, {"Mismatch", keyB, false}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			text := string(good) + fmt.Sprintf("tls: {cert: %q, key: %q}\n", certA, tc.key)
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := runMxgate(t, 30*time.Second, "check-config", "-config", path)
			if tc.ok {
				if code != 0 {
					t.Fatalf("e2e: check-config refused a matching pair: exit %d: %s", code, out+errOut)
				}
				return
			}
			want := "tls.key: " + keyB + " does not match the certificate in " + certA
			if code == 0 || !strings.Contains(errOut, path+":") || !strings.Contains(errOut, want) {
				t.Errorf("e2e: check-config exit %d, stderr %q; want non-zero and a line with %q", code, errOut, want)
			}
		})
	}
}

// writeSelfSigned writes a self-signed certificate and key as PEM files.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mx1.e2e.test"},
		DNSNames:     []string{"mx1.e2e.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}
