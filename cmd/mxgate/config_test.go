package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const goodConfig = `
node: {name: mx1, data_dir: /tmp/mxgate-config-test}
listen: {inbound: ":25", relay: ":26", submission: "", http: ":8025"}
hostname: mx1.example.net
domains: [Example.COM]
backends: ["10.0.0.5:25", "10.0.0.6:25"]
mynetworks: ["10.0.0.0/24", "2001:db8::/32", "192.0.2.7"]
tls: {cert: "", key: "", min_version: "1.2"}
limits: {max_message_bytes: 36700160, max_recipients: 100, max_connections: 1000, per_ip_connections: 20}
queue: {lifetime: 5d, retry_min: 5m, retry_max: 1h}
dns: {resolver: "127.0.0.1:53"}
transports: {example.org: "[10.1.1.1]:25"}
outbound: {port: 25}
`

func TestParseGoodConfig(t *testing.T) {
	cfg, err := ParseConfig("good.yaml", []byte(goodConfig))
	if err != nil {
		t.Fatalf("good config refused:\n%v", err)
	}
	if cfg.Queue.Lifetime.D() != 5*24*time.Hour {
		t.Errorf("queue.lifetime = %v, want 120h", cfg.Queue.Lifetime.D())
	}
	if cfg.Domains[0] != "example.com" {
		t.Errorf("domains not lower-cased: %q", cfg.Domains[0])
	}
	if len(cfg.myNetworks) != 3 || cfg.myNetworks[2].Bits() != 32 {
		t.Errorf("mynetworks parsed as %v", cfg.myNetworks)
	}
	if cfg.Limits.CommandTimeout.D() != 5*time.Minute {
		t.Errorf("default command timeout = %v", cfg.Limits.CommandTimeout.D())
	}
}

func TestConfigErrorsNameKeyAndLine(t *testing.T) {
	for _, tc := range []struct {
		name, edit, want string
	}{
		{"unknown key", "limits: {max_mesage_bytes: 10}", "bad.yaml:2: limits.max_mesage_bytes: unknown key"},
		{"bad duration", "queue: {retry_min: 5x}", `bad.yaml:2: queue.retry_min: invalid duration "5x"`},
		{"bad cidr", `mynetworks: ["10.0.0.0/33"]`, `bad.yaml:2: mynetworks[0]: "10.0.0.0/33" is not a network`},
		{"host bits", `mynetworks: ["10.0.0.1/24"]`, "did you mean 10.0.0.0/24?"},
		{"bad backend", `backends: ["mailhost"]`, `bad.yaml:2: backends[0]: "mailhost" is not host:port`},
		{"bad listen", `listen: {inbound: "25", http: ":8025"}`, `listen.inbound: "25" is not host:port`},
		{"wrong type", "limits: {max_recipients: many}", "limits.max_recipients: cannot use the string `many` here: want a whole number"},
		{"tls half", `tls: {cert: /etc/ssl/x.pem}`, "tls: cert and key go together"},
		{"old tls", `tls: {min_version: "1.0"}`, `tls.min_version: "1.0"`},
		{"retry order", "queue: {retry_min: 2h, retry_max: 1h}", "queue.retry_max: 1h0m0s is less than queue.retry_min"},
		{"bad transport", `transports: {example.org: "[10.1.1.1"}`, "transports.example.org"},
		{"duplicate key", "hostname: a.example\nhostname: b.example", "hostname: key given twice"},
		{"two documents", "hostname: a.example\n---\nnode: {name: y}", "more than one YAML document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The edit goes on line 2 and overrides the base below it.
			text := "# test\n" + tc.edit + "\n"
			base := `node: {name: mx1, data_dir: /tmp/x}
hostname: mx1.example.net
domains: [example.com]
backends: ["127.0.0.1:2526"]
`
			for _, line := range strings.Split(base, "\n") {
				key := strings.SplitN(line, ":", 2)[0]
				if key != "" && !strings.Contains(tc.edit, key+":") {
					text += line + "\n"
				}
			}
			_, err := ParseConfig("bad.yaml", []byte(text))
			if err == nil {
				t.Fatalf("config accepted:\n%s", text)
			}
			var errs ConfigErrors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want ConfigErrors", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n%v\ndoes not contain\n%s", err, tc.want)
			}
		})
	}
}

func TestConfigReportsEveryProblem(t *testing.T) {
	text := `node: {name: mx1, data_dir: /tmp/x}
hostname: mx1.example.net
domains: [example.com]
backends: ["nohostport"]
mynetworks: ["bogus"]
limits: {max_mesage_bytes: 1}
queue: {retry_min: 5x}
`
	_, err := ParseConfig("c.yaml", []byte(text))
	var errs ConfigErrors
	if !errors.As(err, &errs) || len(errs) != 4 {
		t.Fatalf("want 4 problems, got %d:\n%v", len(errs), err)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"90s": 90 * time.Second, "3m": 3 * time.Minute, "48h": 48 * time.Hour,
		"36d": 36 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "1d12h": 36 * time.Hour,
	} {
		got, err := parseDuration(in)
		if err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "5x", "d", "-5m", "1d-2h"} {
		if _, err := parseDuration(bad); err == nil {
			t.Errorf("parseDuration(%q) accepted", bad)
		}
	}
}

func TestSessionLimitKeys(t *testing.T) {
	base := `node: {name: mx1, data_dir: /tmp/x}
hostname: mx1.example.net
mynetworks: ["10.0.0.0/24", "192.0.2.7"]
`
	cfg, err := ParseConfig("c.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.HardErrorLimit != 20 || cfg.Limits.JunkCommandLimit != 100 {
		t.Errorf("defaults: hard_error_limit %d, junk_command_limit %d; want 20 and 100", cfg.Limits.HardErrorLimit, cfg.Limits.JunkCommandLimit)
	}
	if len(cfg.connLimitExempt) != 2 || cfg.connLimitExempt[0].String() != "10.0.0.0/24" || cfg.connLimitExempt[1].String() != "192.0.2.7/32" {
		t.Errorf("connection_limit_exempt unset = %v, want mynetworks", cfg.connLimitExempt)
	}

	cfg, err = ParseConfig("c.yaml", []byte(base+"limits: {hard_error_limit: 3, junk_command_limit: 7, connection_limit_exempt: []}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.HardErrorLimit != 3 || cfg.Limits.JunkCommandLimit != 7 {
		t.Errorf("hard_error_limit %d, junk_command_limit %d; want 3 and 7", cfg.Limits.HardErrorLimit, cfg.Limits.JunkCommandLimit)
	}
	if cfg.connLimitExempt == nil || len(cfg.connLimitExempt) != 0 {
		t.Errorf("connection_limit_exempt: [] = %v, want an empty list (nobody exempt)", cfg.connLimitExempt)
	}

	cfg, err = ParseConfig("c.yaml", []byte(base+"limits: {connection_limit_exempt: [\"2001:db8::/32\"]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.connLimitExempt) != 1 || cfg.connLimitExempt[0].String() != "2001:db8::/32" {
		t.Errorf("connection_limit_exempt = %v, want [2001:db8::/32]", cfg.connLimitExempt)
	}

	_, err = ParseConfig("c.yaml", []byte(base+"limits:\n  hard_error_limit: 0\n  junk_command_limit: -1\n  connection_limit_exempt: [\"10.0.0.1/8\"]\n"))
	for _, want := range []string{
		"c.yaml:5: limits.hard_error_limit: 0: want 1 to",
		"c.yaml:6: limits.junk_command_limit: -1: want 1 to",
		"c.yaml:7: limits.connection_limit_exempt[0]: \"10.0.0.1/8\" has host bits set",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error\n%v\ndoes not contain\n%s", err, want)
		}
	}
}

// TestDurationOverflow: a duration that does not fit int64 nanoseconds is
// an error naming the key, never a value wrapped around.
func TestDurationOverflow(t *testing.T) {
	for _, in := range []string{"213504d", "106752d", "15251w", "99999999999999999999d", "9999999999999h", "106751d24h", "100000d100000d"} {
		if got, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) = %v, want an out-of-range error", in, got)
		} else if !strings.Contains(err.Error(), "out of range") {
			t.Errorf("parseDuration(%q): %v; want it to say out of range", in, err)
		}
	}
	if got, err := parseDuration("106751d"); err != nil || got != 106751*24*time.Hour {
		t.Errorf("parseDuration(106751d) = %v, %v", got, err)
	}
	_, err := ParseConfig("c.yaml", []byte("node: {name: mx1, data_dir: /tmp/x}\nhostname: mx1.example.net\nlimits:\n  command_timeout: 213504d\n"))
	if err == nil || !strings.Contains(err.Error(), `c.yaml:4: limits.command_timeout: duration "213504d" is out of range`) {
		t.Errorf("error %v, want c.yaml:4: limits.command_timeout: ... out of range", err)
	}
}

// TestDurationRanges: every duration key has bounds; each value outside
// them is one line naming the key and the range.
func TestDurationRanges(t *testing.T) {
	base := "node: {name: mx1, data_dir: /tmp/x}\nhostname: mx1.example.net\n"
	for _, tc := range []struct{ section, key, value, want string }{
		{"limits", "command_timeout", "2h", "limits.command_timeout: 2h: want 1s to 1h"},
		{"limits", "command_timeout", "0s", "limits.command_timeout: 0s: want 1s to 1h"},
		{"limits", "data_timeout", "1d", "limits.data_timeout: 1d: want 1s to 1h"},
		{"limits", "shutdown_grace", "2h", "limits.shutdown_grace: 2h: want 0s to 1h"},
		{"queue", "retry_min", "0s", "queue.retry_min: 0s: want 1s to 1d"},
		{"queue", "retry_max", "2d", "queue.retry_max: 2d: want 1s to 1d"},
		{"queue", "lifetime", "31d", "queue.lifetime: 31d: want 1m to 30d"},
		{"clamav", "timeout", "500ms", "clamav.timeout: 500ms: want 1s to 1h"},
		{"greylist", "delay", "2d", "greylist.delay: 2d: want 1s to 1d"},
		{"greylist", "retry_window", "5w", "greylist.retry_window: 35d: want 1s to 30d"},
		{"greylist", "lifetime", "366d", "greylist.lifetime: 366d: want 1h to 365d"},
	} {
		text := base + tc.section + ":\n  " + tc.key + ": " + tc.value + "\n"
		_, err := ParseConfig("c.yaml", []byte(text))
		want := "c.yaml:4: " + tc.want
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s.%s: %s: error\n%v\nwant\n%s", tc.section, tc.key, tc.value, err, want)
		}
	}
	// The bounds themselves are accepted.
	ok := base + "limits: {command_timeout: 1h, data_timeout: 1s, shutdown_grace: 0s}\n" +
		"queue: {retry_min: 1s, retry_max: 1d, lifetime: 30d}\n" +
		"greylist: {delay: 1d, retry_window: 30d, lifetime: 365d}\nclamav: {timeout: 1h}\n"
	if _, err := ParseConfig("c.yaml", []byte(ok)); err != nil {
		t.Errorf("bounds refused:\n%v", err)
	}
}

// writeTestPair writes a self-signed certificate and its key as PEM.
func writeTestPair(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mx1.example.net"},
		DNSNames:     []string{"mx1.example.net"},
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
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestTLSFilesChecked: check-config reads the STARTTLS certificate and key
// and names the key whose file is wrong.
func TestTLSFilesChecked(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTestPair(t, dir, "a")
	_, otherKey := writeTestPair(t, dir, "b")
	notPEM := filepath.Join(dir, "notpem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := func(c, k string) []byte {
		return []byte("node: {name: mx1, data_dir: " + strconv.Quote(filepath.Join(dir, "data")) + "}\nhostname: mx1.example.net\n" +
			"tls: {cert: " + strconv.Quote(c) + ", key: " + strconv.Quote(k) + "}\n")
	}
	if _, err := ParseConfig("c.yaml", conf(cert, key)); err != nil {
		t.Fatalf("good pair refused:\n%v", err)
	}
	for _, tc := range []struct{ name, cert, key, want string }{
		{"missing cert", filepath.Join(dir, "none.crt"), key, "c.yaml:3: tls.cert: open " + filepath.Join(dir, "none.crt") + ": no such file or directory"},
		{"directory as key", cert, dir, "c.yaml:3: tls.key: " + dir + ": not a regular file"},
		{"key not PEM", cert, notPEM, "c.yaml:3: tls.key: " + notPEM + ": no PEM private key"},
		{"cert not PEM", notPEM, key, "c.yaml:3: tls.cert: " + notPEM + ": no PEM certificate"},
		{"key is a certificate", cert, cert, "c.yaml:3: tls.key: " + cert + ": no PEM private key"},
		{"key of another cert", cert, otherKey, "c.yaml:3: tls.key: " + otherKey + " does not match the certificate in " + cert},
	} {
		_, err := ParseConfig("c.yaml", conf(tc.cert, tc.key))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error\n%v\nwant\n%s", tc.name, err, tc.want)
		}
	}
}

// TestDataDirChecked: node.data_dir must be a directory that can be
// written, or created.
func TestDataDirChecked(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	conf := func(d string) []byte {
		return []byte("node:\n  name: mx1\n  data_dir: " + strconv.Quote(d) + "\nhostname: mx1.example.net\n")
	}
	for _, d := range []string{dir, filepath.Join(dir, "new", "deeper")} {
		if _, err := ParseConfig("c.yaml", conf(d)); err != nil {
			t.Errorf("data_dir %s refused:\n%v", d, err)
		}
	}
	for d, want := range map[string]string{
		file:                         "c.yaml:3: node.data_dir: " + file + " is a file, not a directory",
		filepath.Join(file, "spool"): "c.yaml:3: node.data_dir: " + filepath.Join(file, "spool") + " cannot be created: " + file + " is a file",
	} {
		_, err := ParseConfig("c.yaml", conf(d))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("data_dir %s: error\n%v\nwant\n%s", d, err, want)
		}
	}
}

func TestHTTPOptions(t *testing.T) {
	base := "node: {name: mx1, data_dir: /tmp/x}\nhostname: mx1.example.net\n"
	cfg, err := ParseConfig("c.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	o, err := httpOptions(cfg, getenv, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if o.MaxConns != 256 || o.IdleTimeout != time.Minute || o.ReadHeaderTimeout != 10*time.Second || o.ReadTimeout <= 0 || o.WriteTimeout < 30*time.Second {
		t.Errorf("defaults: %+v", o)
	}
	env["MXGATE_HTTP_IDLE_TIMEOUT"], env["MXGATE_HTTP_READ_HEADER_TIMEOUT"] = "1500ms", "2s"
	if o, err = httpOptions(cfg, getenv, discardLogger()); err != nil || o.IdleTimeout != 1500*time.Millisecond || o.ReadHeaderTimeout != 2*time.Second {
		t.Errorf("from the environment: %+v, %v", o, err)
	}
	for _, bad := range []string{"0s", "1ms", "2h", "soon"} {
		env["MXGATE_HTTP_IDLE_TIMEOUT"] = bad
		if _, err := httpOptions(cfg, getenv, discardLogger()); err == nil || !strings.Contains(err.Error(), "MXGATE_HTTP_IDLE_TIMEOUT") {
			t.Errorf("MXGATE_HTTP_IDLE_TIMEOUT=%s: %v, want an error naming the variable", bad, err)
		}
	}
	if cfg, err = ParseConfig("c.yaml", []byte(base+"limits: {http_connections: 32}\n")); err != nil || cfg.Limits.HTTPConnections != 32 {
		t.Errorf("limits.http_connections: 32: %v", err)
	}
	_, err = ParseConfig("c.yaml", []byte(base+"limits: {http_connections: 2}\n"))
	if err == nil || !strings.Contains(err.Error(), "c.yaml:3: limits.http_connections: 2: want 4 to 10000") {
		t.Errorf("limits.http_connections: 2: %v", err)
	}
}

// TestConfigProblemLines: for files with problems in every section, the
// decoding errors (in the file's order) and the problems of each key
// (sorted by key, those of one key in the order they are checked) are
// exactly the lines of testdata/config/*.golden, one per problem, as
// "file:line: key: why".
func TestConfigProblemLines(t *testing.T) {
	files, err := filepath.Glob("testdata/config/*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("testdata/config: %v %v", files, err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var got string
			if _, err := ParseConfig(name, data); err != nil {
				got = err.Error() + "\n"
			}
			want, err := os.ReadFile(strings.TrimSuffix(path, ".yaml") + ".golden")
			if errors.Is(err, os.ErrNotExist) {
				want, err = nil, nil // no problem expected
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("problems of %s:\n%s\nwant:\n%s", name, got, want)
			}
		})
	}
}
