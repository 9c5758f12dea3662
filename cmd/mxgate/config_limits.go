package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/mxgate/mxgate/gateway"
)

// LimitsSection bounds what one client and all clients together may use.
type LimitsSection struct {
	MaxMessageBytes   int64    `yaml:"max_message_bytes"`
	MaxRecipients     int      `yaml:"max_recipients"`
	MaxConnections    int      `yaml:"max_connections"`
	PerIPConnections  int      `yaml:"per_ip_connections"`
	CommandTimeout    Duration `yaml:"command_timeout"`
	DataTimeout       Duration `yaml:"data_timeout"`
	ShutdownGraceTime Duration `yaml:"shutdown_grace"`
	HardErrorLimit    int      `yaml:"hard_error_limit"`
	JunkCommandLimit  int      `yaml:"junk_command_limit"`
	// ConnLimitExempt: nil (not set) means mynetworks (Config.validate);
	// an empty list exempts nobody.
	ConnLimitExempt []string `yaml:"connection_limit_exempt"`
	// HTTPConnections caps the HTTP listener's open connections.
	HTTPConnections int `yaml:"http_connections"`

	exempt []netip.Prefix // ConnLimitExempt parsed; nil when not set
}

func (s *LimitsSection) setDefaults() {
	*s = LimitsSection{
		MaxMessageBytes:   gateway.DefaultMaxMessageBytes,
		MaxRecipients:     gateway.DefaultMaxRecipients,
		MaxConnections:    gateway.DefaultMaxConnections,
		PerIPConnections:  gateway.DefaultPerIPConnections,
		CommandTimeout:    Duration(gateway.DefaultCommandTimeout),
		DataTimeout:       Duration(gateway.DefaultDataTimeout),
		ShutdownGraceTime: Duration(gateway.DefaultShutdownGrace),
		HardErrorLimit:    gateway.DefaultHardErrorLimit,
		JunkCommandLimit:  gateway.DefaultJunkCommandLimit,
		HTTPConnections:   gateway.DefaultHTTPConnections,
	}
}

// validate also parses ConnLimitExempt.
func (s *LimitsSection) validate(failed failedKeys) ConfigErrors {
	var errs ConfigErrors
	if s.MaxMessageBytes < 1024 {
		errs.add("limits.max_message_bytes", "%d is too small (at least 1024)", s.MaxMessageBytes)
	}
	if s.MaxRecipients < 1 {
		errs.add("limits.max_recipients", "must be at least 1 (RFC 5321 §4.5.3.1.8 asks for 100)")
	}
	if s.MaxConnections < 1 {
		errs.add("limits.max_connections", "must be at least 1")
	}
	if s.PerIPConnections < 1 {
		errs.add("limits.per_ip_connections", "must be at least 1")
	}
	if s.PerIPConnections > s.MaxConnections && failed.decoded("limits.per_ip_connections", "limits.max_connections") {
		errs.add("limits.per_ip_connections", "%d is more than limits.max_connections (%d)", s.PerIPConnections, s.MaxConnections)
	}
	if s.HardErrorLimit < 1 || s.HardErrorLimit > 1000000 {
		errs.add("limits.hard_error_limit", "%d: want 1 to 1000000 (4xx and 5xx replies before the session is closed)", s.HardErrorLimit)
	}
	if s.JunkCommandLimit < 1 || s.JunkCommandLimit > 1000000 {
		errs.add("limits.junk_command_limit", "%d: want 1 to 1000000 (NOOP, RSET, VRFY, HELP and ETRN commands before the session is closed)", s.JunkCommandLimit)
	}
	if s.HTTPConnections < 4 || s.HTTPConnections > 10000 {
		errs.add("limits.http_connections", "%d: want 4 to 10000 (open connections to listen.http; each is a file descriptor)", s.HTTPConnections)
	}
	s.exempt = nil
	if s.ConnLimitExempt != nil {
		s.exempt = []netip.Prefix{}
		for i, n := range s.ConnLimitExempt {
			p, err := parsePrefix(n)
			if err != nil {
				errs.add(fmt.Sprintf("limits.connection_limit_exempt[%d]", i), "%v", err)
				continue
			}
			s.exempt = append(s.exempt, p)
		}
	}
	checkDuration(&errs, "limits.command_timeout", s.CommandTimeout, time.Second, time.Hour, " (RFC 5321 asks for 5m)")
	checkDuration(&errs, "limits.data_timeout", s.DataTimeout, time.Second, time.Hour, " (RFC 5321 asks for 10m per read)")
	checkDuration(&errs, "limits.shutdown_grace", s.ShutdownGraceTime, 0, time.Hour, "")
	return errs
}

// gatewayConfig is the SMTP side's configuration: this section's limits
// with the node's names and networks.
func (c *Config) gatewayConfig(tlsConf *tls.Config, logger *slog.Logger) gateway.Config {
	return gateway.Config{
		Hostname:         c.Hostname,
		Domains:          c.Domains,
		MyNetworks:       c.myNetworks,
		TLS:              tlsConf,
		MaxMessageBytes:  c.Limits.MaxMessageBytes,
		MaxRecipients:    c.Limits.MaxRecipients,
		MaxConnections:   c.Limits.MaxConnections,
		PerIPConnections: c.Limits.PerIPConnections,
		CommandTimeout:   c.Limits.CommandTimeout.D(),
		DataTimeout:      c.Limits.DataTimeout.D(),
		ConnLimitExempt:  c.connLimitExempt,
		HardErrorLimit:   c.Limits.HardErrorLimit,
		JunkCommandLimit: c.Limits.JunkCommandLimit,
		Logger:           logger,
	}
}
