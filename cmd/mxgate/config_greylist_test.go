package main

import (
	"log/slog"
	"strings"
	"testing"
)

// TestGreylistKeySPFDomain: greylist.key_spf_domain needs the score mode,
// and reaches the greylist check with it.
func TestGreylistKeySPFDomain(t *testing.T) {
	base := "node: {name: mx1, data_dir: /tmp/x}\nhostname: mx1.example.net\n"
	_, err := ParseConfig("c.yaml", []byte(base+"greylist: {key_spf_domain: true}\n"))
	if err == nil || !strings.Contains(err.Error(), "greylist.key_spf_domain: needs greylist.mode: score") {
		t.Errorf("key_spf_domain in rcpt mode: error %v", err)
	}
	cfg, err := ParseConfig("c.yaml", []byte(base+"greylist: {mode: score, key_spf_domain: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	gc := cfg.greylistCheck(nil, slog.New(slog.DiscardHandler))
	if !gc.KeySPFDomain || gc.ScoreThreshold != defaultSpamGreylist {
		t.Errorf("score mode with key_spf_domain: check %+v", gc)
	}
	cfg.Greylist.Mode, cfg.Greylist.KeySPFDomain = greylistModeRcpt, false
	if gc := cfg.greylistCheck(nil, slog.New(slog.DiscardHandler)); gc.KeySPFDomain || gc.ScoreThreshold != 0 {
		t.Errorf("rcpt mode: check %+v", gc)
	}
}
