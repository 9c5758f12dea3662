package greylist

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Config holds the greylisting rules. Zero values take the defaults noted.
type Config struct {
	Delay          time.Duration // default 3m
	RetryWindow    time.Duration // default 48h
	Lifetime       time.Duration // default 36d (passed triplets, refreshed on use; auto-allowed networks)
	NetmaskV4      int           // default 24
	NetmaskV6      int           // default 64
	AutoAllowAfter int           // a client network that passed this many distinct times is auto-allowed for everything; default 5 (DefaultConfig); 0 or negative disables

	AllowNetworks   []netip.Prefix
	AllowSenders    []string // "user@example.com" or "example.com" (exactly that domain, case-insensitive)
	AllowRecipients []string // same forms, e.g. "postmaster@example.com" or "example.com"

	Clock func() time.Time // nil: time.Now
}

// Defaults.
const (
	DefaultDelay          = 3 * time.Minute
	DefaultRetryWindow    = 48 * time.Hour
	DefaultLifetime       = 36 * 24 * time.Hour
	DefaultNetmaskV4      = 24
	DefaultNetmaskV6      = 64
	DefaultAutoAllowAfter = 5
)

// Result is the bounded label value of a decision.
type Result string

// Results.
const (
	ResultNew         Result = "new"
	ResultEarlyRetry  Result = "early_retry"
	ResultPassed      Result = "passed"
	ResultAllowed     Result = "allowed"
	ResultAutoAllowed Result = "auto_allowed"
	ResultStoreError  Result = "store_error"
)

var allResults = []Result{ResultNew, ResultEarlyRetry, ResultPassed, ResultAllowed, ResultAutoAllowed, ResultStoreError}

// Decision is the outcome of Check.
type Decision struct {
	Pass   bool
	Result Result
	// Retry is, for new and early_retry, how long until a retry passes.
	Retry time.Duration
	// Err is the store error behind a store_error decision (nil otherwise),
	// for the caller to log with its session context.
	Err error
}

// Store holds triplets and client networks. Keys are opaque strings built by
// the Greylister. MemoryStore keeps them on one node; cluster.GreylistStore
// replicates them with Raft. A store may drop an entry once it is Expired;
// until then it must keep it.
type Store interface {
	GetTriplet(ctx context.Context, key string) (Triplet, bool, error)
	PutTriplet(ctx context.Context, key string, t Triplet) error
	GetNetwork(ctx context.Context, network string) (Network, bool, error)
	PutNetwork(ctx context.Context, network string, n Network) error
}

// Triplet is the state of one (network, sender, recipient) triplet.
type Triplet struct {
	FirstSeen, LastSeen time.Time
	PassedAt            time.Time // zero until passed
	ExpiresAt           time.Time // end of the retry window, or of the lifetime once passed
}

// Expired reports whether t is dead at now: its retry window ended before
// it passed, or its lifetime ended without use. The Greylister treats an
// expired triplet as new, and the stores drop it (MemoryStore.Expire, the
// cluster's expiry): this is the one place the rule lives.
func (t Triplet) Expired(now time.Time) bool { return !now.Before(t.ExpiresAt) }

// Network counts the distinct triplets a client network has passed.
type Network struct {
	Passes       int
	AllowedUntil time.Time // auto-allowed while in the future
	// ExpiresAt is when the pass count is forgotten (Lifetime after the
	// last pass or use); a store may drop the entry once both ExpiresAt and
	// AllowedUntil have passed.
	ExpiresAt time.Time
}

// Expired reports whether n is dead at now: both its pass count
// (ExpiresAt) and its auto-allow (AllowedUntil) have ended. The Greylister
// treats an expired network as unknown, and the stores drop it
// (MemoryStore.Expire, the cluster's expiry): this is the one place the
// rule lives.
func (n Network) Expired(now time.Time) bool {
	end := n.ExpiresAt
	if n.AllowedUntil.After(end) {
		end = n.AllowedUntil
	}
	return !now.Before(end)
}

// Greylister decides on triplets. It is safe for concurrent use as far as
// the Store is; two concurrent first attempts of one triplet both answer
// new, which is harmless.
type Greylister struct {
	cfg        Config
	store      Store
	now        func() time.Time
	senders    addressList
	recipients addressList
}

// DefaultConfig returns the defaults, AutoAllowAfter included. New fills
// in the other zero values itself, but AutoAllowAfter 0 means disabled, so a
// config loader should start from DefaultConfig.
func DefaultConfig() Config {
	return Config{
		Delay:          DefaultDelay,
		RetryWindow:    DefaultRetryWindow,
		Lifetime:       DefaultLifetime,
		NetmaskV4:      DefaultNetmaskV4,
		NetmaskV6:      DefaultNetmaskV6,
		AutoAllowAfter: DefaultAutoAllowAfter,
	}
}

// New returns a Greylister with cfg's zero durations and netmasks replaced
// by defaults (AutoAllowAfter 0 stays disabled: see DefaultConfig).
func New(cfg Config, store Store) *Greylister {
	if cfg.Delay <= 0 {
		cfg.Delay = DefaultDelay
	}
	if cfg.RetryWindow <= 0 {
		cfg.RetryWindow = DefaultRetryWindow
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = DefaultLifetime
	}
	if cfg.NetmaskV4 <= 0 || cfg.NetmaskV4 > 32 {
		cfg.NetmaskV4 = DefaultNetmaskV4
	}
	if cfg.NetmaskV6 <= 0 || cfg.NetmaskV6 > 128 {
		cfg.NetmaskV6 = DefaultNetmaskV6
	}
	if cfg.AutoAllowAfter < 0 {
		cfg.AutoAllowAfter = 0
	}
	now := cfg.Clock
	if now == nil {
		now = time.Now
	}
	return &Greylister{
		cfg:        cfg,
		store:      store,
		now:        now,
		senders:    newAddressList(cfg.AllowSenders, NormalizeSender),
		recipients: newAddressList(cfg.AllowRecipients, normalizeRecipient),
	}
}

// Config returns the effective configuration (defaults applied).
func (g *Greylister) Config() Config { return g.cfg }

// NetworkOf returns the client network a triplet key uses: the address
// masked to NetmaskV4 or NetmaskV6, IPv4-mapped IPv6 treated as IPv4.
func (g *Greylister) NetworkOf(client netip.Addr) string {
	if !client.IsValid() {
		return "invalid"
	}
	client = client.Unmap().WithZone("")
	bits := g.cfg.NetmaskV6
	if client.Is4() {
		bits = g.cfg.NetmaskV4
	}
	p, err := client.Prefix(bits)
	if err != nil {
		return client.String()
	}
	return p.String()
}

// TripletKey is the store key of a triplet.
func (g *Greylister) TripletKey(client netip.Addr, sender, rcpt string) string {
	return tripletKey(g.NetworkOf(client), NormalizeSender(sender), normalizeRecipient(rcpt))
}

func tripletKey(network, sender, rcpt string) string {
	// The network (or SPF domain key) never contains '|' and the sender
	// is length-prefixed, so distinct triplets never share a key.
	return fmt.Sprintf("%s|%d:%s|%s", network, len(sender), sender, rcpt)
}

// Check decides on one recipient of a transaction (the null sender is
// checked per recipient at DATA end by the caller). Store errors fail open.
func (g *Greylister) Check(ctx context.Context, client netip.Addr, sender, rcpt string) Decision {
	d := g.check(ctx, client, g.NetworkOf(client), sender, rcpt)
	metricDecisions.WithLabelValues(string(d.Result)).Inc()
	return d
}

// SPFDomainKey is the network part of the triplets of a sender keyed by
// its SPF-validated domain: "spf:example.org".
func SPFDomainKey(domain string) string {
	return "spf:" + strings.ToLower(strings.TrimSuffix(domain, "."))
}

// CheckSPFDomain is Check for a sender whose SPF passed for domain: the
// triplet (and the auto-allow count) is keyed by SPFDomainKey(domain)
// instead of the client network, so that a domain sending from many
// networks (a provider's outbound pool) is delayed once, not once per
// network. allow_networks still applies to the client.
func (g *Greylister) CheckSPFDomain(ctx context.Context, client netip.Addr, domain, sender, rcpt string) Decision {
	d := g.check(ctx, client, SPFDomainKey(domain), sender, rcpt)
	metricDecisions.WithLabelValues(string(d.Result)).Inc()
	return d
}

// check decides with the triplet's network part given (a client network
// or an SPF domain key).
func (g *Greylister) check(ctx context.Context, client netip.Addr, network, sender, rcpt string) Decision {
	sender = NormalizeSender(sender)
	rcpt = normalizeRecipient(rcpt)
	if g.allowed(client, sender, rcpt) {
		return Decision{Pass: true, Result: ResultAllowed}
	}
	now := g.now()

	var netState Network
	if g.cfg.AutoAllowAfter > 0 {
		n, ok, err := g.store.GetNetwork(ctx, network)
		if err != nil {
			return storeError(err)
		}
		if ok && n.Expired(now) {
			ok, n = false, Network{} // forgotten, as if expired by the store
		}
		if ok && now.Before(n.AllowedUntil) {
			n.AllowedUntil = now.Add(g.cfg.Lifetime)
			n.ExpiresAt = n.AllowedUntil
			if err := g.store.PutNetwork(ctx, network, n); err != nil {
				return storeError(err)
			}
			return Decision{Pass: true, Result: ResultAutoAllowed}
		}
		if ok && !n.AllowedUntil.IsZero() {
			// Auto-allow lapsed without use: count afresh.
			n = Network{}
		}
		netState = n
	}

	key := tripletKey(network, sender, rcpt)
	t, ok, err := g.store.GetTriplet(ctx, key)
	if err != nil {
		return storeError(err)
	}
	if !ok || t.Expired(now) {
		// New, or past its retry window unpassed, or past its lifetime
		// unused: start over.
		t = Triplet{FirstSeen: now, LastSeen: now, ExpiresAt: now.Add(g.cfg.Delay + g.cfg.RetryWindow)}
		if err := g.store.PutTriplet(ctx, key, t); err != nil {
			return storeError(err)
		}
		return Decision{Result: ResultNew, Retry: g.cfg.Delay}
	}
	if !t.PassedAt.IsZero() {
		t.LastSeen = now
		t.ExpiresAt = now.Add(g.cfg.Lifetime)
		if err := g.store.PutTriplet(ctx, key, t); err != nil {
			return storeError(err)
		}
		return Decision{Pass: true, Result: ResultPassed}
	}
	if passAt := t.FirstSeen.Add(g.cfg.Delay); now.Before(passAt) {
		// Early retry: FirstSeen stays, or a client retrying every minute
		// would never pass.
		t.LastSeen = now
		if err := g.store.PutTriplet(ctx, key, t); err != nil {
			return storeError(err)
		}
		return Decision{Result: ResultEarlyRetry, Retry: passAt.Sub(now)}
	}
	t.LastSeen = now
	t.PassedAt = now
	t.ExpiresAt = now.Add(g.cfg.Lifetime)
	if err := g.store.PutTriplet(ctx, key, t); err != nil {
		return storeError(err)
	}
	if g.cfg.AutoAllowAfter > 0 {
		netState.Passes++
		netState.ExpiresAt = now.Add(g.cfg.Lifetime)
		if netState.Passes >= g.cfg.AutoAllowAfter {
			netState.AllowedUntil = now.Add(g.cfg.Lifetime)
		}
		if err := g.store.PutNetwork(ctx, network, netState); err != nil {
			return storeError(err)
		}
	}
	return Decision{Pass: true, Result: ResultPassed}
}

func storeError(err error) Decision {
	return Decision{Pass: true, Result: ResultStoreError, Err: err}
}

// allowed reports whether an allow list exempts the transaction; it takes
// normalised addresses.
func (g *Greylister) allowed(client netip.Addr, sender, rcpt string) bool {
	if client.IsValid() {
		c := client.Unmap().WithZone("")
		for _, p := range g.cfg.AllowNetworks {
			if p.Contains(c) || (p.Addr().Is4In6() && p.Bits() >= 96 && netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Contains(c)) {
				return true
			}
		}
	}
	return g.senders.match(sender) || g.recipients.match(rcpt)
}
