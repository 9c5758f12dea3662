package main

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/cluster"
)

func runTLSInit(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runClusterTLSInit(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func readTestFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func parseTestCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(readTestFile(t, path))
	if block == nil {
		t.Fatalf("%s: not PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func checkPerm(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

func loadNodeTLS(t *testing.T, dir, node string) {
	t.Helper()
	_, err := cluster.LoadTLS(cluster.TLSFiles{
		CA:   filepath.Join(dir, "ca.pem"),
		Cert: filepath.Join(dir, node+".pem"),
		Key:  filepath.Join(dir, node+"-key.pem"),
	})
	if err != nil {
		t.Errorf("node %s: %v", node, err)
	}
}

// outputLine returns the line of out that reports path, or "".
func outputLine(out, path string) string {
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) >= 2 && f[1] == path {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

func TestClusterTLSInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cluster-tls")
	code, out, errOut := runTLSInit(t, "-dir", dir, "-nodes", "mx1,mx2", "-hosts", "mx1=10.0.0.1,mx1.example.net;", "-days", "30")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}

	checkPerm(t, dir, 0o700)
	files := map[string]os.FileMode{
		"ca.pem": 0o644, "ca-key.pem": 0o600,
		"mx1.pem": 0o644, "mx1-key.pem": 0o600,
		"mx2.pem": 0o644, "mx2-key.pem": 0o600,
		"gossip.key": 0o600,
	}
	for name, perm := range files {
		p := filepath.Join(dir, name)
		checkPerm(t, p, perm)
		if line := outputLine(out, p); !strings.HasPrefix(line, "wrote ") {
			t.Errorf("output for %s: %q, want a \"wrote\" line", name, line)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(files) {
		t.Errorf("%d entries in %s, want %d (temporary files left?)", len(entries), dir, len(files))
	}

	loadNodeTLS(t, dir, "mx1")
	loadNodeTLS(t, dir, "mx2")
	mx1 := parseTestCert(t, filepath.Join(dir, "mx1.pem"))
	if want := []string{cluster.ServerName, "mx1", "mx1.example.net"}; !slices.Equal(mx1.DNSNames, want) {
		t.Errorf("mx1 DNSNames %q, want %q", mx1.DNSNames, want)
	}
	if len(mx1.IPAddresses) != 1 || !mx1.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) {
		t.Errorf("mx1 IPAddresses %v, want [10.0.0.1]", mx1.IPAddresses)
	}
	mx2 := parseTestCert(t, filepath.Join(dir, "mx2.pem"))
	if want := []string{cluster.ServerName, "mx2"}; !slices.Equal(mx2.DNSNames, want) || len(mx2.IPAddresses) != 0 {
		t.Errorf("mx2 DNSNames %q IPAddresses %v, want %q and none", mx2.DNSNames, mx2.IPAddresses, want)
	}

	gossip := readTestFile(t, filepath.Join(dir, "gossip.key"))
	if !bytes.HasSuffix(gossip, []byte("\n")) {
		t.Errorf("gossip.key %q does not end in a newline", gossip)
	}
	if key, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(string(gossip), "\n")); err != nil || len(key) != 32 {
		t.Errorf("gossip.key: %d bytes, %v; want 32 bytes of base64", len(key), err)
	}

	hint := "cluster: {secret_file: " + dir + "/gossip.key, tls: {ca: " + dir + "/ca.pem, cert: " + dir + "/mx2.pem, key: " + dir + "/mx2-key.pem}}\n"
	if !strings.Contains(out, hint) {
		t.Errorf("output lacks the config hint %q:\n%s", hint, out)
	}
}

func TestClusterTLSInitAddsNodeWithSameCA(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := runTLSInit(t, "-dir", dir, "-nodes", "mx1,mx2"); code != 0 {
		t.Fatalf("first run: exit %d: %s", code, errOut)
	}
	kept := []string{"ca.pem", "ca-key.pem", "mx1.pem", "mx1-key.pem", "gossip.key"}
	before := make(map[string][]byte)
	for _, name := range kept {
		before[name] = readTestFile(t, filepath.Join(dir, name))
	}

	code, out, errOut := runTLSInit(t, "-dir", dir, "-nodes", "mx1,mx3")
	if code != 0 || errOut != "" {
		t.Fatalf("second run: exit %d, stderr %q", code, errOut)
	}
	for _, name := range kept {
		p := filepath.Join(dir, name)
		if !bytes.Equal(readTestFile(t, p), before[name]) {
			t.Errorf("%s changed", name)
		}
		if line := outputLine(out, p); !strings.HasPrefix(line, "kept ") {
			t.Errorf("output for %s: %q, want a \"kept\" line", name, line)
		}
	}
	for _, name := range []string{"mx3.pem", "mx3-key.pem"} {
		if line := outputLine(out, filepath.Join(dir, name)); !strings.HasPrefix(line, "wrote ") {
			t.Errorf("output for %s: %q, want a \"wrote\" line", name, line)
		}
	}

	roots := x509.NewCertPool()
	roots.AddCert(parseTestCert(t, filepath.Join(dir, "ca.pem")))
	_, err := parseTestCert(t, filepath.Join(dir, "mx3.pem")).Verify(x509.VerifyOptions{
		Roots: roots, DNSName: cluster.ServerName, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		t.Errorf("mx3.pem does not verify against the first run's CA: %v", err)
	}
	loadNodeTLS(t, dir, "mx3")
	loadNodeTLS(t, dir, "mx2") // not named in the second run, untouched
}

func TestClusterTLSInitUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no flags", nil, "-dir is required"},
		{"no nodes", []string{"-dir", "D"}, "-nodes is required"},
		{"no dir", []string{"-nodes", "mx1"}, "-dir is required"},
		{"space in name", []string{"-dir", "D", "-nodes", "mx1,mx 2"}, `"mx 2"`},
		{"slash in name", []string{"-dir", "D", "-nodes", "../mx1"}, `"../mx1"`},
		{"empty name", []string{"-dir", "D", "-nodes", "mx1,,mx2"}, `node name ""`},
		{"long name", []string{"-dir", "D", "-nodes", strings.Repeat("m", 65)}, strings.Repeat("m", 65)},
		{"hidden name", []string{"-dir", "D", "-nodes", ".mx1"}, `".mx1"`},
		{"name of the CA", []string{"-dir", "D", "-nodes", "mx1,CA"}, `"CA" is reserved`},
		{"name like a key", []string{"-dir", "D", "-nodes", "mx1,mx1-key"}, `"mx1-key"`},
		{"duplicate", []string{"-dir", "D", "-nodes", "mx1,mx2,mx1"}, `"mx1" listed twice`},
		{"hosts of unknown node", []string{"-dir", "D", "-nodes", "mx1", "-hosts", "mx9=10.0.0.9"}, `"mx9" is not in -nodes`},
		{"hosts without =", []string{"-dir", "D", "-nodes", "mx1", "-hosts", "mx1"}, `"mx1": want NODE=host1,host2`},
		{"bad host", []string{"-dir", "D", "-nodes", "mx1", "-hosts", "mx1=10.0.0.1,bad host"}, `"bad host"`},
		{"empty host", []string{"-dir", "D", "-nodes", "mx1", "-hosts", "mx1=10.0.0.1,"}, "empty host"},
		{"zero days", []string{"-dir", "D", "-nodes", "mx1", "-days", "0"}, "-days 0"},
		{"argument", []string{"-dir", "D", "-nodes", "mx1", "extra"}, `"extra"`},
		{"unknown flag", []string{"-dir", "D", "-nodes", "mx1", "-force"}, "-force"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			args := slices.Clone(tc.args)
			for i, a := range args {
				if a == "D" {
					args[i] = dir
				}
			}
			code, out, errOut := runTLSInit(t, args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not name %q", errOut, tc.want)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("%s was created on a usage error", dir)
			}
		})
	}
}

// TestClusterTLSInitRefusesBrokenState checks that files tls-init cannot
// use stop the run (exit 1) before anything is written.
func TestClusterTLSInitRefusesBrokenState(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"cert without key", func(t *testing.T, dir string) {
			runTLSInitOK(t, "-dir", dir, "-nodes", "mx1")
			tlsInitMust(t, os.Remove(filepath.Join(dir, "mx1-key.pem")))
		}, "mx1-key.pem does not"},
		{"CA key without CA", func(t *testing.T, dir string) {
			runTLSInitOK(t, "-dir", dir, "-nodes", "mx1")
			tlsInitMust(t, os.Remove(filepath.Join(dir, "ca.pem")))
		}, "ca.pem does not"},
		{"node from another CA", func(t *testing.T, dir string) {
			other := t.TempDir()
			runTLSInitOK(t, "-dir", other, "-nodes", "mx1")
			runTLSInitOK(t, "-dir", dir, "-nodes", "mx2")
			for _, name := range []string{"mx1.pem", "mx1-key.pem"} {
				tlsInitMust(t, os.WriteFile(filepath.Join(dir, name), readTestFile(t, filepath.Join(other, name)), 0o600))
			}
		}, "not signed by the cluster CA"},
		{"bad gossip key", func(t *testing.T, dir string) {
			runTLSInitOK(t, "-dir", dir, "-nodes", "mx2")
			tlsInitMust(t, os.WriteFile(filepath.Join(dir, "gossip.key"), []byte("c2hvcnQ=\n"), 0o600))
		}, "gossip.key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			before, err := os.ReadDir(dir)
			tlsInitMust(t, err)
			code, out, errOut := runTLSInit(t, "-dir", dir, "-nodes", "mx1,mx4")
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not say %q", errOut, tc.want)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			after, err := os.ReadDir(dir)
			tlsInitMust(t, err)
			if len(after) != len(before) {
				t.Errorf("%d files before, %d after a refused run", len(before), len(after))
			}
		})
	}
}

func runTLSInitOK(t *testing.T, args ...string) {
	t.Helper()
	if code, _, errOut := runTLSInit(t, args...); code != 0 {
		t.Fatalf("tls-init %q: exit %d: %s", args, code, errOut)
	}
}

func tlsInitMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
