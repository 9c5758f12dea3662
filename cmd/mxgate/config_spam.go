package main

import (
	"fmt"
	"math"
	"regexp"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/filter/auth"
)

// Spam scoring defaults (SpamAssassin's scale: tag at 5).
const (
	defaultSpamGreylist   = 4.0
	defaultSpamTag        = 5.0
	defaultSpamQuarantine = 8.0
	defaultSpamReject     = 15.0
)

// spam.dmarc_reject values.
const (
	dmarcRejectRefuse = "reject" // 550 5.7.1
	dmarcRejectScore  = "score"  // DMARC_FAIL_REJECT scores instead
)

// SpamSection is spam scoring on the inbound listener: the score levels,
// per-symbol score overrides, and which local checks run (DNS block lists
// and Bayes have their own sections).
type SpamSection struct {
	Enabled    bool               `yaml:"enabled"`
	Greylist   float64            `yaml:"greylist"`
	Tag        float64            `yaml:"tag"`
	Quarantine float64            `yaml:"quarantine"`
	Reject     float64            `yaml:"reject"`
	Scores     map[string]float64 `yaml:"scores"`
	// SenderAuth runs SPF, DKIM and DMARC.
	SenderAuth  bool   `yaml:"sender_auth"`
	DMARCReject string `yaml:"dmarc_reject"`
	// Heuristics runs the header and content heuristics and GTUBE.
	Heuristics bool `yaml:"heuristics"`
}

func (s *SpamSection) setDefaults() {
	*s = SpamSection{Enabled: true, Greylist: defaultSpamGreylist, Tag: defaultSpamTag, Quarantine: defaultSpamQuarantine,
		Reject: defaultSpamReject, SenderAuth: true, DMARCReject: dmarcRejectRefuse, Heuristics: true}
}

var symbolName = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)

func (s *SpamSection) validate(failed failedKeys) ConfigErrors {
	var errs ConfigErrors
	levels := []struct {
		key string
		v   float64
	}{{"spam.greylist", s.Greylist}, {"spam.tag", s.Tag}, {"spam.quarantine", s.Quarantine}, {"spam.reject", s.Reject}}
	for _, l := range levels {
		if math.IsNaN(l.v) || l.v < 0 || l.v > 10000 {
			errs.add(l.key, "%v: want 0 (off) to 10000", l.v)
		}
	}
	// Each level that is on must not be below the one before it.
	prev, prevKey := 0.0, ""
	for _, l := range levels[1:] {
		if l.v == 0 {
			continue
		}
		if prev > 0 && l.v < prev {
			errs.add(l.key, "%v is below %s (%v): the levels go tag, quarantine, reject", l.v, prevKey, prev)
		}
		prev, prevKey = l.v, l.key
	}
	for name, v := range s.Scores {
		if !symbolName.MatchString(name) {
			errs.add("spam.scores", "%q: a symbol is upper-case letters, digits and _", name)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 10000 {
			errs.add(fmt.Sprintf("spam.scores.%s", name), "%v: want -10000 to 10000", v)
		}
	}
	if s.DMARCReject != dmarcRejectRefuse && s.DMARCReject != dmarcRejectScore {
		errs.add("spam.dmarc_reject", "%q: want reject (550 5.7.1 for a failure under p=reject) or score", s.DMARCReject)
	}
	return errs
}

// thresholds are the score levels for the pipeline.
func (s SpamSection) thresholds() filter.Thresholds {
	return filter.Thresholds{Tag: s.Tag, Quarantine: s.Quarantine, Reject: s.Reject}
}

// authConfig is sender authentication's configuration.
func (s SpamSection) authConfig() auth.Config {
	return auth.Config{DMARCRejectAsScore: s.DMARCReject == dmarcRejectScore}
}
