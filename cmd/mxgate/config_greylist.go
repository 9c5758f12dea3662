package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/mxgate/mxgate/greylist"
)

// GreylistSection is the triplet policy applied at RCPT on the inbound
// listener.
type GreylistSection struct {
	Enabled bool `yaml:"enabled"`
	// Mode is rcpt (every new triplet, at RCPT) or score (only mail
	// whose spam score reaches spam.greylist, at the end of DATA).
	Mode string `yaml:"mode"`
	// KeySPFDomain, in score mode, keys the triplet of a sender whose SPF
	// passed by its SPF-validated domain instead of its client network.
	KeySPFDomain    bool     `yaml:"key_spf_domain"`
	Delay           Duration `yaml:"delay"`
	RetryWindow     Duration `yaml:"retry_window"`
	Lifetime        Duration `yaml:"lifetime"`
	NetmaskV4       int      `yaml:"netmask_v4"`
	NetmaskV6       int      `yaml:"netmask_v6"`
	AutoAllowAfter  int      `yaml:"auto_allow_after"`
	AllowNetworks   []string `yaml:"allow_networks"`
	AllowSenders    []string `yaml:"allow_senders"`
	AllowRecipients []string `yaml:"allow_recipients"`

	allowNets []netip.Prefix // AllowNetworks parsed by validate
}

func (s *GreylistSection) setDefaults() {
	d := greylist.DefaultConfig()
	*s = GreylistSection{
		Enabled:        true,
		Mode:           greylistModeRcpt,
		Delay:          Duration(d.Delay),
		RetryWindow:    Duration(d.RetryWindow),
		Lifetime:       Duration(d.Lifetime),
		NetmaskV4:      d.NetmaskV4,
		NetmaskV6:      d.NetmaskV6,
		AutoAllowAfter: d.AutoAllowAfter,
	}
}

// validate also parses AllowNetworks.
func (s *GreylistSection) validate(failed failedKeys) ConfigErrors {
	var errs ConfigErrors
	if s.Mode != greylistModeRcpt && s.Mode != greylistModeScore {
		errs.add("greylist.mode", "%q: want rcpt (every new triplet) or score (mail reaching spam.greylist)", s.Mode)
	}
	if s.KeySPFDomain && s.Mode != greylistModeScore {
		errs.add("greylist.key_spf_domain", "needs greylist.mode: score (SPF is checked at the end of DATA, after RCPT)")
	}
	checkDuration(&errs, "greylist.delay", s.Delay, time.Second, oneDay, "")
	checkDuration(&errs, "greylist.retry_window", s.RetryWindow, time.Second, 30*oneDay, "")
	checkDuration(&errs, "greylist.lifetime", s.Lifetime, time.Hour, 365*oneDay, "")
	if s.RetryWindow.D() <= s.Delay.D() && failed.decoded("greylist.delay", "greylist.retry_window") {
		errs.add("greylist.retry_window", "%v must be longer than greylist.delay (%v)", s.RetryWindow.D(), s.Delay.D())
	}
	if s.NetmaskV4 < 8 || s.NetmaskV4 > 32 {
		errs.add("greylist.netmask_v4", "%d: want 8 to 32", s.NetmaskV4)
	}
	if s.NetmaskV6 < 16 || s.NetmaskV6 > 128 {
		errs.add("greylist.netmask_v6", "%d: want 16 to 128", s.NetmaskV6)
	}
	if s.AutoAllowAfter < 0 {
		errs.add("greylist.auto_allow_after", "must be 0 (off) or more")
	}
	s.allowNets = nil
	for i, n := range s.AllowNetworks {
		p, err := parsePrefix(n)
		if err != nil {
			errs.add(fmt.Sprintf("greylist.allow_networks[%d]", i), "%v", err)
			continue
		}
		s.allowNets = append(s.allowNets, p)
	}
	for key, list := range map[string][]string{"greylist.allow_senders": s.AllowSenders, "greylist.allow_recipients": s.AllowRecipients} {
		for i, a := range list {
			if !validAllowEntry(a) {
				errs.add(fmt.Sprintf("%s[%d]", key, i), "%q: want user@domain or domain", a)
			}
		}
	}
	return errs
}

// greylist.mode values.
const (
	greylistModeRcpt  = "rcpt"
	greylistModeScore = "score"
)

// validAllowEntry accepts "user@domain" and "domain".
func validAllowEntry(a string) bool {
	dom := a
	if at := strings.LastIndexByte(a, '@'); at >= 0 {
		if at == 0 {
			return false
		}
		dom = a[at+1:]
	}
	return validDomain(dom)
}

// greylistConfig is the greylister's configuration.
func (s GreylistSection) greylistConfig() greylist.Config {
	return greylist.Config{
		Delay:           s.Delay.D(),
		RetryWindow:     s.RetryWindow.D(),
		Lifetime:        s.Lifetime.D(),
		NetmaskV4:       s.NetmaskV4,
		NetmaskV6:       s.NetmaskV6,
		AutoAllowAfter:  s.AutoAllowAfter,
		AllowNetworks:   s.allowNets,
		AllowSenders:    s.AllowSenders,
		AllowRecipients: s.AllowRecipients,
	}
}

// greylistCheck is greylisting as the inbound listener's recipient check:
// in score mode (with spam scoring on) only mail reaching spam.greylist,
// keyed by the SPF domain with key_spf_domain.
func (c *Config) greylistCheck(g *greylist.Greylister, logger *slog.Logger) *greylist.Check {
	gc := &greylist.Check{Greylister: g, Logger: logger}
	if c.Greylist.Mode == greylistModeScore && c.Spam.Enabled {
		gc.ScoreThreshold, gc.KeySPFDomain = c.Spam.Greylist, c.Greylist.KeySPFDomain
	}
	return gc
}
