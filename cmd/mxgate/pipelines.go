package main

import (
	"fmt"
	"log/slog"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/filter/auth"
	"github.com/mxgate/mxgate/filter/bayes"
	"github.com/mxgate/mxgate/filter/clamav"
	"github.com/mxgate/mxgate/filter/dnsbl"
	"github.com/mxgate/mxgate/filter/heuristics"
	"github.com/mxgate/mxgate/filter/rspamd"
	"github.com/mxgate/mxgate/gateway"
	"github.com/mxgate/mxgate/greylist"
	"github.com/mxgate/mxgate/internal/dns"
	"github.com/mxgate/mxgate/lists"
)

// checkDeps are the services the checks use, built by serve.
type checkDeps struct {
	resolver dns.Resolver
	scanner  *clamav.Client // nil: scanning off
	health   *clamav.Health
	grey     *greylist.Greylister // nil: greylisting off
	lists    lists.Store
	extra    []filter.BodyCheck // more scored body checks (heuristics, Bayes)
	logger   *slog.Logger
}

// policies are the listeners' policies: the Internet's mail is checked
// against the lists, greylisted, scanned for viruses and scored for spam;
// the backends' outgoing mail is scanned for viruses.
func (c *Config) policies(d checkDeps) (inbound, relay gateway.Policy, err error) {
	var virus []filter.BodyCheck
	if d.scanner != nil {
		virus = append(virus, c.clamavCheck(d.scanner, d.health.Observe, d.logger))
	}
	listCheck := &lists.Check{Store: d.lists, Logger: d.logger}
	in := filter.Config{Sender: []filter.SenderCheck{listCheck}, Logger: d.logger}
	in.Body = append(in.Body, virus...)
	if d.grey != nil {
		in.Rcpt = append(in.Rcpt, c.greylistCheck(d.grey, d.logger))
	}
	if c.Spam.Enabled {
		in.Body = append(in.Body, listCheck)
		in.Thresholds, in.Scores, in.Spam = c.Spam.thresholds(), c.Spam.Scores, true
		if c.Spam.SenderAuth {
			ac := c.Spam.authConfig()
			ac.Resolver, ac.Hostname, ac.Logger = d.resolver, c.Hostname, d.logger
			a, err := auth.New(ac)
			if err != nil {
				return inbound, relay, fmt.Errorf("sender authentication: %w", err)
			}
			in.Body = append(in.Body, a)
		}
		if c.DNSBL.enabled() {
			bc := c.DNSBL.dnsblConfig()
			bc.Resolver, bc.Logger = d.resolver, d.logger
			b, err := dnsbl.New(bc)
			if err != nil {
				return inbound, relay, fmt.Errorf("dnsbl: %w", err)
			}
			in.Body = append(in.Body, b)
		}
		if c.Spam.Heuristics {
			in.Body = append(in.Body, heuristics.Check{}, heuristics.GTUBECheck{})
		}
		if c.Rspamd.URL != "" {
			rc := c.Rspamd.config()
			rc.Logger = d.logger
			r, err := rspamd.New(rc)
			if err != nil {
				return inbound, relay, err
			}
			in.Body = append(in.Body, r)
		}
		in.Body = append(in.Body, d.extra...)
		if c.Bayes.Autolearn {
			for _, x := range d.extra {
				if bc, ok := x.(*bayes.Check); ok {
					al := &bayes.Autolearn{Check: bc, Spam: bayes.DefaultAutolearnSpam, Ham: bayes.DefaultAutolearnHam}
					in.AfterBody = al.AfterBody
				}
			}
		}
	}
	inbound = gateway.Policy{Name: gateway.ListenerInbound, Relay: gateway.RelayTrusted, Pipeline: filter.New(in)}
	relay = gateway.Policy{Name: gateway.ListenerRelay, OnlyMyNetworks: true, Relay: gateway.RelayTrusted,
		Pipeline: filter.New(filter.Config{Body: virus, Logger: d.logger})}
	return inbound, relay, nil
}
