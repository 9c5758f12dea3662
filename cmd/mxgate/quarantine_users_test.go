package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuarantineUsersChecks: the link key must be base64 of at least 32
// bytes in a file only its owner reads; the report needs it and a valid
// HH:MM; base_url must be an http(s) URL.
func TestQuarantineUsersChecks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key32 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	good := write("good", key32+"\n", 0o600)
	for _, tc := range []struct {
		name      string
		set       func(s *QuarantineSection)
		wantKeys  string
		wantMatch string
	}{
		{"key and report", func(s *QuarantineSection) {
			s.LinkKeyFile, s.Report.At, s.BaseURL = good, "07:00", "https://mx.example.com:8025"
		}, "", ""},
		{"key alone", func(s *QuarantineSection) { s.LinkKeyFile = good }, "", ""},
		{"readable key", func(s *QuarantineSection) { s.LinkKeyFile = write("open", key32, 0o644) }, "quarantine.link_key_file", "chmod 600"},
		{"short key", func(s *QuarantineSection) {
			s.LinkKeyFile = write("short", base64.StdEncoding.EncodeToString([]byte("short")), 0o600)
		}, "quarantine.link_key_file", "want at least 32"},
		{"missing key", func(s *QuarantineSection) { s.LinkKeyFile = filepath.Join(dir, "none") }, "quarantine.link_key_file", "no such file"},
		{"report without key", func(s *QuarantineSection) { s.Report.At = "07:00" }, "quarantine.report.at", "link_key_file"},
		{"bad time", func(s *QuarantineSection) { s.LinkKeyFile, s.Report.At = good, "7am" }, "quarantine.report.at", "HH:MM"},
		{"bad base_url", func(s *QuarantineSection) { s.LinkKeyFile, s.BaseURL = good, "mx.example.com" }, "quarantine.base_url", "http"},
	} {
		var s QuarantineSection
		s.setDefaults()
		tc.set(&s)
		var keys, msgs []string
		for _, e := range s.validate(failedKeys{}) {
			keys = append(keys, e.Key)
			msgs = append(msgs, e.Error())
		}
		if got := strings.Join(keys, ","); got != tc.wantKeys || !strings.Contains(strings.Join(msgs, ";"), tc.wantMatch) {
			t.Errorf("%s: problems %q %q, want %q with %q", tc.name, got, msgs, tc.wantKeys, tc.wantMatch)
		}
		if tc.wantKeys == "" && len(s.linkKey) != 32 {
			t.Errorf("%s: key not read", tc.name)
		}
	}
}

func TestQuarantineBaseURL(t *testing.T) {
	cfg := &Config{}
	cfg.Hostname = "mx1.example.com"
	for listen, want := range map[string]string{
		"127.0.0.1:8025": "http://127.0.0.1:8025",
		":8025":          "http://mx1.example.com:8025",
		"0.0.0.0:8025":   "http://mx1.example.com:8025",
		"[::]:8025":      "http://mx1.example.com:8025",
	} {
		cfg.Listen.HTTP = listen
		if got := quarantineBaseURL(cfg); got != want {
			t.Errorf("%s: %s, want %s", listen, got, want)
		}
	}
	cfg.Quarantine.BaseURL = "https://quarantine.example.com"
	if got := quarantineBaseURL(cfg); got != "https://quarantine.example.com" {
		t.Errorf("base_url: %s", got)
	}
}
