package main

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/mxgate/mxgate/filter/dnsbl"
	"github.com/mxgate/mxgate/internal/dns"
)

// DNSBLSection lists the DNS block lists the inbound mail is checked
// against: none by default (most public lists need a subscription key for
// commercial use; the README shows Spamhaus's).
type DNSBLSection struct {
	IPZones     []DNSBLZone `yaml:"ip_zones"`
	DomainZones []DNSBLZone `yaml:"domain_zones"`
	// SkipPrivate leaves out clients with private addresses, which no
	// list knows.
	SkipPrivate bool     `yaml:"skip_private"`
	Timeout     Duration `yaml:"timeout"`

	zones [2][]dnsbl.Zone // parsed by validate
}

// DNSBLZone is one list.
type DNSBLZone struct {
	Zone       string      `yaml:"zone"`
	Symbol     string      `yaml:"symbol"`
	Score      float64     `yaml:"score"`
	Codes      []DNSBLCode `yaml:"codes"`
	ErrorCodes []string    `yaml:"error_codes"`
}

// DNSBLCode is an answer that counts.
type DNSBLCode struct {
	Code   string  `yaml:"code"`
	Symbol string  `yaml:"symbol"`
	Score  float64 `yaml:"score"`
}

func (s *DNSBLSection) setDefaults() {
	*s = DNSBLSection{SkipPrivate: true, Timeout: Duration(dnsbl.DefaultTimeout)}
}

func (s *DNSBLSection) validate(failedKeys) ConfigErrors {
	var errs ConfigErrors
	checkDuration(&errs, "dnsbl.timeout", s.Timeout, 100*time.Millisecond, time.Minute, "")
	for k, list := range [2][]DNSBLZone{s.IPZones, s.DomainZones} {
		key := [2]string{"dnsbl.ip_zones", "dnsbl.domain_zones"}[k]
		s.zones[k] = nil
		for i, z := range list {
			zk := fmt.Sprintf("%s[%d]", key, i)
			if !validDomain(z.Zone) {
				errs.add(zk+".zone", "%q is not a DNS zone", z.Zone)
				continue
			}
			zone := dnsbl.Zone{Zone: z.Zone, Symbol: z.Symbol, Score: z.Score}
			for j, c := range z.Codes {
				a, err := netip.ParseAddr(c.Code)
				if err != nil || !a.Is4() {
					errs.add(fmt.Sprintf("%s.codes[%d].code", zk, j), "%q: want an IPv4 address such as 127.0.0.2", c.Code)
					continue
				}
				zone.Codes = append(zone.Codes, dnsbl.Code{Addr: a, Symbol: c.Symbol, Score: c.Score})
			}
			if z.ErrorCodes != nil {
				zone.ErrorCodes = []netip.Prefix{}
			}
			for j, ec := range z.ErrorCodes {
				p, err := parsePrefix(ec)
				if err != nil {
					errs.add(fmt.Sprintf("%s.error_codes[%d]", zk, j), "%v", err)
					continue
				}
				zone.ErrorCodes = append(zone.ErrorCodes, p)
			}
			s.zones[k] = append(s.zones[k], zone)
		}
	}
	if len(errs) == 0 && (len(s.zones[0]) > 0 || len(s.zones[1]) > 0) {
		cfg := s.dnsblConfig()
		cfg.Resolver = dns.Mock{}
		if _, err := dnsbl.New(cfg); err != nil {
			errs.add("dnsbl", "%v", err)
		}
	}
	return errs
}

// enabled reports whether any zone is configured.
func (s DNSBLSection) enabled() bool { return len(s.zones[0])+len(s.zones[1]) > 0 }

// dnsblConfig is the check's configuration, without its resolver.
func (s DNSBLSection) dnsblConfig() dnsbl.Config {
	return dnsbl.Config{IPZones: s.zones[0], DomainZones: s.zones[1], SkipPrivate: s.SkipPrivate, Timeout: s.Timeout.D()}
}
