package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const goodConfig = `
node: {name: mx1, data_dir: /var/lib/mxgate}
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
