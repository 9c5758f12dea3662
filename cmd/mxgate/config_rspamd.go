package main

import (
	"net/url"
	"time"

	"github.com/mxgate/mxgate/filter/rspamd"
)

// RspamdSection adds a running rspamd as one more scored check; empty url:
// off.
type RspamdSection struct {
	URL     string   `yaml:"url"`
	Weight  float64  `yaml:"weight"`
	Timeout Duration `yaml:"timeout"`
}

func (s *RspamdSection) setDefaults() {
	*s = RspamdSection{Weight: 1, Timeout: Duration(rspamd.DefaultTimeout)}
}

func (s *RspamdSection) validate(failedKeys) ConfigErrors {
	var errs ConfigErrors
	if s.URL != "" {
		if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs.add("rspamd.url", "%q: want http://host:port of rspamd's normal worker", s.URL)
		}
	}
	if s.Weight < 0 || s.Weight > 100 {
		errs.add("rspamd.weight", "%v: want 0 to 100", s.Weight)
	}
	checkDuration(&errs, "rspamd.timeout", s.Timeout, 100*time.Millisecond, time.Minute, "")
	return errs
}

// config is the check's configuration.
func (s RspamdSection) config() rspamd.Config {
	return rspamd.Config{URL: s.URL, Weight: s.Weight, Timeout: s.Timeout.D()}
}
