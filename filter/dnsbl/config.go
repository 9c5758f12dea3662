package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/internal/dns"
)

// CheckName is the check's name in the pipeline's metrics and its error
// symbol (DNSBL_ERROR).
const CheckName = "dnsbl"

// Defaults for Config fields left zero.
const (
	DefaultMaxDomains  = 20
	DefaultConcurrency = 16
	DefaultTimeout     = 5 * time.Second
)

// DefaultErrorCodes are the answers that are errors in every zone whose
// ErrorCodes is nil (see the package documentation).
var DefaultErrorCodes = []netip.Prefix{netip.MustParsePrefix("127.255.255.0/24")}

// Zone is one block list.
type Zone struct {
	// Zone is the list's DNS zone ("zen.spamhaus.org"); also its metric
	// label.
	Zone string
	// Symbol is the name of a hit when Codes is empty, and the prefix of
	// the zone's error symbol (Symbol + "_ERROR"). Default: RBL_ (IP
	// zones) or URIBL_ (domain zones) and the zone in upper case with
	// dots and dashes as underscores: RBL_ZEN_SPAMHAUS_ORG.
	Symbol string
	// Score is the score of a hit when Codes is empty.
	Score float64
	// Codes are the answers that count, each with its own symbol and
	// score. Empty: any answer in 127.0.0.0/8 counts, as Symbol with
	// Score.
	Codes []Code
	// ErrorCodes are answers that are errors, never hits. Nil:
	// DefaultErrorCodes; an empty, non-nil slice: none.
	ErrorCodes []netip.Prefix
}

// Code is one answer of a zone that counts: for zen.spamhaus.org,
// 127.0.0.2 (SBL), 127.0.0.4 (XBL), 127.0.0.10 (PBL).
type Code struct {
	Addr   netip.Addr // an IPv4 address
	Symbol string     // default: the zone's Symbol
	Score  float64
}

// Config configures the check.
type Config struct {
	Resolver dns.Resolver
	// IPZones are asked about the client's IP address.
	IPZones []Zone
	// DomainZones are asked about the registrable domains of the
	// message's URLs.
	DomainZones []Zone
	// SkipPrivate skips the IP zones for clients whose address is not
	// public (loopback, RFC 1918 and unique local, link local, shared
	// 100.64.0.0/10, unspecified, multicast): no list knows them. On in
	// production; off in tests that connect from 127.0.0.1.
	SkipPrivate bool
	// URLHosts returns the hosts of the message's URLs, in the order
	// found; nil: a bounded scan of the message's text parts (see
	// ScanURLHosts). Hosts returned with an error are still used.
	URLHosts func(ctx context.Context, m *filter.Message) ([]string, error)
	// MaxDomains bounds the registrable domains looked up per message;
	// default DefaultMaxDomains.
	MaxDomains int
	// Concurrency bounds the lookups running at once in one check run;
	// default DefaultConcurrency.
	Concurrency int
	// Timeout bounds all the lookups of one check run together; a lookup
	// not answered by then is an error. Default DefaultTimeout.
	Timeout time.Duration
	Logger  *slog.Logger
}

// zone is a validated Zone.
type zone struct {
	name       string // lower case, no final dot
	symbol     string
	errSymbol  string
	score      float64
	codes      []Code
	errorCodes []netip.Prefix
}

// New validates cfg and returns the check.
func New(cfg Config) (*Check, error) {
	if cfg.Resolver == nil {
		return nil, errors.New("dnsbl: no resolver")
	}
	if cfg.MaxDomains < 0 || cfg.Concurrency < 0 || cfg.Timeout < 0 {
		return nil, errors.New("dnsbl: negative max domains, concurrency or timeout")
	}
	if cfg.MaxDomains == 0 {
		cfg.MaxDomains = DefaultMaxDomains
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Check{cfg: cfg, urlHosts: cfg.URLHosts}
	if c.urlHosts == nil {
		c.urlHosts = ScanURLHosts
	}
	var err error
	if c.ipZones, err = compileZones(cfg.IPZones, "RBL_"); err != nil {
		return nil, fmt.Errorf("dnsbl: IP zones: %w", err)
	}
	if c.domainZones, err = compileZones(cfg.DomainZones, "URIBL_"); err != nil {
		return nil, fmt.Errorf("dnsbl: domain zones: %w", err)
	}
	for _, zs := range [][]zone{c.ipZones, c.domainZones} {
		for _, z := range zs {
			for _, r := range []string{resultHit, resultMiss, resultError} {
				metricLookups.WithLabelValues(z.name, r)
			}
		}
	}
	return c, nil
}

func compileZones(zs []Zone, prefix string) ([]zone, error) {
	out := make([]zone, 0, len(zs))
	seen := map[string]bool{}
	for _, z := range zs {
		name := strings.TrimSuffix(strings.ToLower(z.Zone), ".")
		if !validName(name) {
			return nil, fmt.Errorf("zone %q: not a domain name", z.Zone)
		}
		if seen[name] {
			return nil, fmt.Errorf("zone %q: listed twice", z.Zone)
		}
		seen[name] = true
		cz := zone{name: name, symbol: z.Symbol, score: z.Score, errorCodes: z.ErrorCodes}
		if cz.symbol == "" {
			cz.symbol = DefaultSymbol(prefix, name)
		}
		if !validSymbol(cz.symbol) {
			return nil, fmt.Errorf("zone %s: symbol %q: want A-Z, 0-9 and _", name, cz.symbol)
		}
		cz.errSymbol = cz.symbol + "_ERROR"
		if cz.errorCodes == nil {
			cz.errorCodes = DefaultErrorCodes
		}
		for _, p := range cz.errorCodes {
			if !p.IsValid() || !p.Addr().Is4() {
				return nil, fmt.Errorf("zone %s: error code %s: want an IPv4 prefix", name, p)
			}
		}
		for _, code := range z.Codes {
			if !code.Addr.Is4() {
				return nil, fmt.Errorf("zone %s: code %s: want an IPv4 address", name, code.Addr)
			}
			if code.Symbol == "" {
				code.Symbol = cz.symbol
			}
			if !validSymbol(code.Symbol) {
				return nil, fmt.Errorf("zone %s: code %s: symbol %q: want A-Z, 0-9 and _", name, code.Addr, code.Symbol)
			}
			if isErrorCode(cz.errorCodes, code.Addr) {
				return nil, fmt.Errorf("zone %s: code %s is also an error code", name, code.Addr)
			}
			cz.codes = append(cz.codes, code)
		}
		out = append(out, cz)
	}
	return out, nil
}

// DefaultSymbol is a zone's symbol when the config gives none: prefix and
// the zone in upper case, dots and dashes as underscores.
func DefaultSymbol(prefix, zone string) string {
	return prefix + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(strings.TrimSuffix(zone, ".")))
}

func validSymbol(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// validName reports whether name (lower case, no final dot) is a domain
// name of letters, digits, dashes and underscores that fits in a query.
func validName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
}

func isErrorCode(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
