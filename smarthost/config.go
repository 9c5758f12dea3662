package smarthost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/dns"
)

// Config configures a Queue. Zero values take the documented defaults.
type Config struct {
	// Dir is the spool directory (node.data_dir + "/spool"); created if missing.
	Dir string
	// Hostname is our name: EHLO to next hops, DSN Reporting-MTA, and the
	// From of DSNs (MAILER-DAEMON@Hostname).
	Hostname string
	// LocalDomains are the relay domains whose recipients go to Backends
	// (compared case-insensitively).
	LocalDomains []string
	// Backends are the "host:port" addresses of the backend mailbox servers,
	// used round-robin over the healthy ones.
	Backends []string
	// Transports maps a recipient domain to the next hop that overrides its
	// MX: "[10.1.1.1]:25" (brackets: literal host, no MX lookup) or
	// "host:port" / "host" (MX lookup of host, as Postfix transport maps do).
	Transports map[string]string
	// OutboundPort is the port of remote MX hosts (default 25).
	OutboundPort int
	// Resolver answers the MX and address lookups of MX routing: the
	// node's one internal/dns client, built from dns.resolver (README
	// "Configuration"). Nil: a client of its own for the nameserver of
	// /etc/resolv.conf.
	Resolver dns.Resolver
	// Lifetime is the queue lifetime: recipients still pending after it
	// bounce (default 5 days).
	Lifetime time.Duration
	// RetryMin is the first retry delay (default 5m); it doubles per attempt.
	RetryMin time.Duration
	// RetryMax caps the retry delay (default 1h).
	RetryMax time.Duration
	// Workers is the number of concurrent deliveries (default 32).
	Workers int
	// Logger receives the mail log, one line per event with the queue id.
	Logger *slog.Logger
	// Clock returns the time used for message timestamps, retry scheduling
	// and expiry; nil means time.Now. Tests inject a fake clock.
	Clock func() time.Time
	// Dialer opens TCP connections to next hops; nil uses a net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

	// BackendDownMin is how long a failed backend is first considered down
	// before the health checker probes it again (default 5s); it doubles on
	// each consecutive failure up to BackendDownMax (default 5m).
	BackendDownMin time.Duration
	BackendDownMax time.Duration
	// IdleTimeout closes pooled SMTP connections unused for that long
	// (default 30s).
	IdleTimeout time.Duration
}

const (
	defaultLifetime       = 5 * 24 * time.Hour
	defaultRetryMin       = 5 * time.Minute
	defaultRetryMax       = time.Hour
	defaultWorkers        = 32
	defaultOutboundPort   = 25
	defaultBackendDownMin = 5 * time.Second
	defaultBackendDownMax = 5 * time.Minute
	defaultIdleTimeout    = 30 * time.Second

	// Client timeouts. RFC 5321 §4.5.3.2 recommends 5 minutes for most
	// replies and 10 for the final dot; we keep commands shorter so a stuck
	// backend is detected sooner, and give the end of DATA 5 minutes because
	// content filters at the next hop run there.
	connectTimeout = 30 * time.Second
	commandTimeout = 2 * time.Minute
	dataTimeout    = 5 * time.Minute
)

// withDefaults validates cfg and fills in defaults.
func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	if cfg.Dir == "" {
		errs = append(errs, errors.New("spool directory is empty"))
	}
	if cfg.Hostname == "" {
		errs = append(errs, errors.New("hostname is empty"))
	}
	for _, b := range cfg.Backends {
		if _, _, err := net.SplitHostPort(b); err != nil {
			errs = append(errs, fmt.Errorf("backend %q: %w", b, err))
		}
	}
	for dom, spec := range cfg.Transports {
		if _, err := parseTransport(spec, 25); err != nil {
			errs = append(errs, fmt.Errorf("transport for %q: %w", dom, err))
		}
	}
	if len(errs) > 0 {
		return cfg, fmt.Errorf("smarthost config: %w", errors.Join(errs...))
	}
	if cfg.OutboundPort == 0 {
		cfg.OutboundPort = defaultOutboundPort
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = defaultLifetime
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = defaultRetryMin
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = defaultRetryMax
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = cfg.RetryMin
	}
	if cfg.Workers <= 0 {
		cfg.Workers = defaultWorkers
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Dialer == nil {
		d := &net.Dialer{Timeout: connectTimeout}
		cfg.Dialer = d.DialContext
	}
	if cfg.BackendDownMin <= 0 {
		cfg.BackendDownMin = defaultBackendDownMin
	}
	if cfg.BackendDownMax <= 0 {
		cfg.BackendDownMax = defaultBackendDownMax
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = defaultIdleTimeout
	}
	// Domains are case-insensitive (RFC 5321 §2.4).
	local := make([]string, len(cfg.LocalDomains))
	for i, d := range cfg.LocalDomains {
		local[i] = strings.ToLower(strings.TrimSuffix(d, "."))
	}
	cfg.LocalDomains = local
	tr := make(map[string]string, len(cfg.Transports))
	for d, spec := range cfg.Transports {
		tr[strings.ToLower(strings.TrimSuffix(d, "."))] = spec
	}
	cfg.Transports = tr
	return cfg, nil
}
