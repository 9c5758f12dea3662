package main

import (
	"fmt"
	"net/netip"
	"strings"
)

// MailSection is the file's top-level keys: the node's mail name, the
// domains it takes mail for, where that mail goes, and who may relay.
type MailSection struct {
	Hostname   string            `yaml:"hostname"`
	Domains    []string          `yaml:"domains"`
	Backends   []string          `yaml:"backends"`
	MyNetworks []string          `yaml:"mynetworks"`
	Transports map[string]string `yaml:"transports"`

	myNetworks []netip.Prefix // MyNetworks parsed by validate
}

func (s *MailSection) setDefaults() {}

// validate also lower-cases Domains and parses MyNetworks.
func (s *MailSection) validate(failedKeys) ConfigErrors {
	var errs ConfigErrors
	if s.Hostname == "" {
		errs.add("hostname", "required: the name used in the banner, EHLO and Received headers")
	} else if !validDomain(s.Hostname) {
		errs.add("hostname", "%q is not a valid host name", s.Hostname)
	}
	seen := map[string]bool{}
	for i, d := range s.Domains {
		key := fmt.Sprintf("domains[%d]", i)
		ld := strings.ToLower(strings.TrimSuffix(d, "."))
		if !validDomain(ld) {
			errs.add(key, "%q is not a valid domain name", d)
		} else if seen[ld] {
			errs.add(key, "%q is listed twice", d)
		}
		seen[ld] = true
		s.Domains[i] = ld
	}
	if len(s.Domains) > 0 && len(s.Backends) == 0 {
		errs.add("backends", "required when domains are set: the mailbox servers that receive the domains' mail")
	}
	for i, b := range s.Backends {
		if err := checkHostPort(b); err != nil {
			errs.add(fmt.Sprintf("backends[%d]", i), "%v", err)
		}
	}
	s.myNetworks = nil
	for i, n := range s.MyNetworks {
		p, err := parsePrefix(n)
		if err != nil {
			errs.add(fmt.Sprintf("mynetworks[%d]", i), "%v", err)
			continue
		}
		s.myNetworks = append(s.myNetworks, p)
	}
	for dom, hop := range s.Transports {
		key := "transports." + dom
		if !validDomain(strings.ToLower(dom)) {
			errs.add(key, "%q is not a valid domain name", dom)
		}
		if err := checkNextHop(hop); err != nil {
			errs.add(key, "%v", err)
		}
	}
	return errs
}
