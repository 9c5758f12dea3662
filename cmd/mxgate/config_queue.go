package main

import (
	"log/slog"
	"path/filepath"
	"time"

	"github.com/mxgate/mxgate/internal/dns"
	"github.com/mxgate/mxgate/smarthost"
)

// QueueSection is the delivery queue's retry policy.
type QueueSection struct {
	Lifetime Duration `yaml:"lifetime"`
	RetryMin Duration `yaml:"retry_min"`
	RetryMax Duration `yaml:"retry_max"`
	Workers  int      `yaml:"workers"`
}

func (s *QueueSection) setDefaults() {
	*s = QueueSection{
		Lifetime: Duration(smarthost.DefaultLifetime),
		RetryMin: Duration(smarthost.DefaultRetryMin),
		RetryMax: Duration(smarthost.DefaultRetryMax),
		Workers:  smarthost.DefaultWorkers,
	}
}

func (s *QueueSection) validate(failed failedKeys) ConfigErrors {
	var errs ConfigErrors
	checkDuration(&errs, "queue.retry_min", s.RetryMin, time.Second, oneDay, "")
	checkDuration(&errs, "queue.retry_max", s.RetryMax, time.Second, oneDay, "")
	checkDuration(&errs, "queue.lifetime", s.Lifetime, time.Minute, 30*oneDay, " (RFC 5321 asks for 4d to 5d)")
	if s.RetryMax.D() < s.RetryMin.D() && failed.decoded("queue.retry_min", "queue.retry_max") {
		errs.add("queue.retry_max", "%v is less than queue.retry_min (%v)", s.RetryMax.D(), s.RetryMin.D())
	}
	if s.Lifetime.D() < s.RetryMin.D() && failed.decoded("queue.retry_min", "queue.lifetime") {
		errs.add("queue.lifetime", "%v is less than queue.retry_min (%v)", s.Lifetime.D(), s.RetryMin.D())
	}
	if s.Workers < 1 || s.Workers > 1000 {
		errs.add("queue.workers", "%d: want 1 to 1000", s.Workers)
	}
	return errs
}

// DNSSection selects the resolver used for MX lookups.
type DNSSection struct {
	Resolver string `yaml:"resolver"`
	// DNSSEC asks the resolver to validate and reports its AD bit.
	DNSSEC bool `yaml:"dnssec"`
}

func (s *DNSSection) setDefaults() {}

func (s *DNSSection) validate(failedKeys) ConfigErrors {
	var errs ConfigErrors
	if s.Resolver != "" {
		if err := checkHostPort(s.Resolver); err != nil {
			errs.add("dns.resolver", "%v", err)
		}
	}
	return errs
}

// OutboundSection is how remote MX hosts are reached.
type OutboundSection struct {
	Port int `yaml:"port"`
}

func (s *OutboundSection) setDefaults() { s.Port = smarthost.DefaultOutboundPort }

func (s *OutboundSection) validate(failedKeys) ConfigErrors {
	var errs ConfigErrors
	if s.Port < 1 || s.Port > 65535 {
		errs.add("outbound.port", "%d is not a TCP port", s.Port)
	}
	return errs
}

// smarthostConfig is the spool and delivery side's configuration: the
// queue, dns and outbound sections with the node's names, backends and
// transports.
func (c *Config) smarthostConfig(logger *slog.Logger, resolver dns.Resolver) smarthost.Config {
	return smarthost.Config{
		Dir:          filepath.Join(c.Node.DataDir, "spool"),
		Hostname:     c.Hostname,
		LocalDomains: c.Domains,
		Backends:     c.Backends,
		Transports:   c.Transports,
		OutboundPort: c.Outbound.Port,
		Resolver:     resolver,
		Lifetime:     c.Queue.Lifetime.D(),
		RetryMin:     c.Queue.RetryMin.D(),
		RetryMax:     c.Queue.RetryMax.D(),
		Workers:      c.Queue.Workers,
		Logger:       logger,
	}
}
