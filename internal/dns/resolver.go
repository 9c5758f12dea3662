package dns

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// Resolver looks up the records mail handling needs. Client is the real
// one, Mock the one for unit tests.
//
// Every method returns records, or no records and an error (see the package
// documentation for NXDOMAIN, NODATA and temporary failures). The Result
// is valid with or without an error: a negative answer can be authentic
// too.
type Resolver interface {
	// MX returns the MX records of domain, by preference (random order
	// among equal preferences). The null MX of RFC 7505 is MX{Host: ".",
	// Pref: 0}.
	MX(ctx context.Context, domain string) ([]MX, Result, error)
	// IP returns the IPv4 then the IPv6 addresses of host (A and AAAA
	// asked together). An IP literal is returned as it is. When one type
	// has addresses and the other failed temporarily, IP returns the
	// addresses found and the temporary error: a caller that only needs
	// some address (delivery) may use them, one that needs them all (SPF)
	// must not.
	IP(ctx context.Context, host string) ([]netip.Addr, Result, error)
	// TXT returns the TXT records of name.
	TXT(ctx context.Context, name string) ([]TXT, Result, error)
	// PTR returns the names of addr (in-addr.arpa or ip6.arpa).
	PTR(ctx context.Context, addr netip.Addr) ([]string, Result, error)
	// TLSA returns the TLSA records of _port._proto.host (RFC 6698).
	TLSA(ctx context.Context, port int, proto, host string) ([]TLSA, Result, error)
}

// Result describes how an answer was obtained.
type Result struct {
	// Authentic is true when the resolver said, with the AD bit, that it
	// validated every answer the result is made of with DNSSEC. It is only
	// ever true with Options.DNSSEC, and only as trustworthy as the path to
	// the resolver (use a validating resolver on the same host).
	Authentic bool
}

// MX is one mail exchanger. Host is absolute and lower case
// ("mx.example.com."); "." is the null MX.
type MX struct {
	Host string
	Pref uint16
}

// TXT is one TXT record: its character-strings as sent (raw octets, no
// escaping), and Text, the strings joined with nothing between them, as SPF
// (RFC 7208 §3.3), DKIM (RFC 6376 §3.6.2.2) and DMARC read a record.
type TXT struct {
	Strings []string
	Text    string
}

// TLSA is one TLSA record (RFC 6698 §2.1).
type TLSA struct {
	Usage        uint8
	Selector     uint8
	MatchingType uint8
	Data         []byte // certificate association data
}

// Defaults for Options fields left zero.
const (
	DefaultTimeout        = 5 * time.Second
	DefaultCacheSize      = 10000
	DefaultMaxTTL         = time.Hour
	DefaultMaxNegativeTTL = 5 * time.Minute
	DefaultResolvConf     = "/etc/resolv.conf"
)

// Bounds on what an answer may make this package do.
const (
	maxCNAMEs  = 8   // CNAMEs followed for one lookup, in answers and re-queries together
	maxRecords = 512 // records of the type asked for in one answer
	maxNameLen = 254 // absolute name, with the final dot
	udpSize    = 1232
)

// Options configure a Client.
type Options struct {
	// Server is the resolver, "host:port" (dns.resolver). Empty: the first
	// nameserver of ResolvConf, port 53.
	Server string
	// ResolvConf is read when Server is empty; default /etc/resolv.conf.
	ResolvConf string
	// DNSSEC asks the resolver for DNSSEC (DO and AD bits, RFC 6840 §5.7)
	// and reports its AD bit in Result.Authentic (dns.dnssec).
	DNSSEC bool
	// Timeout bounds one query: the UDP question (asked a second time when
	// the first gets no answer within half of it) and, for a truncated
	// answer, the TCP question. Default 5 s. The caller's context bounds
	// the whole lookup.
	Timeout time.Duration
	// CacheSize is the most answers kept; 0 means DefaultCacheSize, a
	// negative value disables the cache.
	CacheSize int
	// MinTTL and MaxTTL clamp the time answers with records are cached
	// (default 0 and 1 h); MaxNegativeTTL caps the time NXDOMAIN and NODATA
	// answers are cached (default 5 min).
	MinTTL, MaxTTL, MaxNegativeTTL time.Duration
	// Logger gets a debug line for each failed query; default: none.
	Logger *slog.Logger
	// Now is the clock of the cache; default time.Now.
	Now func() time.Time
}

// Client is the Resolver that asks the configured resolver with
// miekg/dns. It is safe for concurrent use.
type Client struct {
	server         string
	dnssec         bool
	timeout        time.Duration
	minTTL, maxTTL time.Duration
	maxNegTTL      time.Duration
	cache          *cache // nil: no cache
	log            *slog.Logger
	now            func() time.Time
}

var _ Resolver = (*Client)(nil)

// New returns a Client for opts.
func New(opts Options) (*Client, error) {
	c := &Client{
		dnssec:    opts.DNSSEC,
		timeout:   orDefault(opts.Timeout, DefaultTimeout),
		minTTL:    opts.MinTTL,
		maxTTL:    orDefault(opts.MaxTTL, DefaultMaxTTL),
		maxNegTTL: orDefault(opts.MaxNegativeTTL, DefaultMaxNegativeTTL),
		log:       opts.Logger,
		now:       opts.Now,
	}
	if opts.Timeout < 0 || opts.MinTTL < 0 || opts.MaxTTL < 0 || opts.MaxNegativeTTL < 0 {
		return nil, errors.New("dns: negative timeout or TTL bound")
	}
	if c.minTTL > c.maxTTL {
		return nil, fmt.Errorf("dns: minimum TTL %s above maximum %s", c.minTTL, c.maxTTL)
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	switch {
	case opts.CacheSize == 0:
		c.cache = newCache(DefaultCacheSize)
	case opts.CacheSize > 0:
		c.cache = newCache(opts.CacheSize)
	}
	if opts.Server != "" {
		host, port, err := net.SplitHostPort(opts.Server)
		if err != nil {
			return nil, fmt.Errorf("dns: resolver %q: %w", opts.Server, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 || host == "" {
			return nil, fmt.Errorf("dns: resolver %q: want host:port", opts.Server)
		}
		c.server = opts.Server
		return c, nil
	}
	path := opts.ResolvConf
	if path == "" {
		path = DefaultResolvConf
	}
	conf, err := mdns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("dns: read resolver configuration: %w", err)
	}
	if len(conf.Servers) == 0 {
		return nil, fmt.Errorf("dns: no nameserver in %s", path)
	}
	c.server = net.JoinHostPort(conf.Servers[0], conf.Port)
	return c, nil
}

func orDefault(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// Server returns the "host:port" queries go to.
func (c *Client) Server() string { return c.server }

// MX implements Resolver.
func (c *Client) MX(ctx context.Context, domain string) ([]MX, Result, error) {
	ans, err := c.lookup(ctx, domain, mdns.TypeMX)
	res := Result{Authentic: ans.authentic}
	if err != nil {
		return nil, res, err
	}
	out := make([]MX, 0, len(ans.rrs))
	for _, rr := range ans.rrs {
		if mx, ok := rr.(*mdns.MX); ok {
			out = append(out, MX{Host: strings.ToLower(mx.Mx), Pref: mx.Preference})
		}
	}
	sortMX(out)
	return out, res, nil
}

// sortMX orders by preference, at random among equal ones (RFC 5321 §5.1).
func sortMX(mxs []MX) {
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b MX) int { return int(a.Pref) - int(b.Pref) })
}

// IsNullMX reports whether mxs is the null MX of RFC 7505: one record,
// host ".".
func IsNullMX(mxs []MX) bool {
	return len(mxs) == 1 && mxs[0].Host == "."
}

// IP implements Resolver.
func (c *Client) IP(ctx context.Context, host string) ([]netip.Addr, Result, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap().WithZone("")}, Result{}, nil
	}
	var v6 answer
	var v6err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		v6, v6err = c.lookup(ctx, host, mdns.TypeAAAA)
	}()
	v4, v4err := c.lookup(ctx, host, mdns.TypeA)
	<-done

	res := Result{Authentic: v4.authentic && v6.authentic}
	var out []netip.Addr
	for _, rr := range append(slices.Clip(v4.rrs), v6.rrs...) {
		var ip net.IP
		switch v := rr.(type) {
		case *mdns.A:
			ip = v.A
		case *mdns.AAAA:
			ip = v.AAAA
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap())
		}
	}
	var temp error
	switch {
	case IsTemporary(v4err):
		temp = v4err
	case IsTemporary(v6err):
		temp = v6err
	}
	if len(out) > 0 {
		return out, res, temp
	}
	switch {
	case temp != nil:
		return nil, res, temp
	case IsNXDomain(v6err):
		return nil, res, v6err
	case v4err != nil:
		return nil, res, v4err
	case v6err != nil:
		return nil, res, v6err
	}
	// Records of the type that are not addresses: cannot be.
	return nil, res, &Error{Kind: BadAnswer, Type: "A", Name: host, Server: c.server}
}

// TXT implements Resolver.
func (c *Client) TXT(ctx context.Context, name string) ([]TXT, Result, error) {
	ans, err := c.lookup(ctx, name, mdns.TypeTXT)
	res := Result{Authentic: ans.authentic}
	if err != nil {
		return nil, res, err
	}
	out := make([]TXT, 0, len(ans.rrs))
	for _, rr := range ans.rrs {
		t, ok := rr.(*mdns.TXT)
		if !ok {
			continue
		}
		strs := make([]string, len(t.Txt))
		for i, s := range t.Txt {
			strs[i] = unescape(s)
		}
		out = append(out, TXT{Strings: strs, Text: strings.Join(strs, "")})
	}
	return out, res, nil
}

// PTR implements Resolver.
func (c *Client) PTR(ctx context.Context, addr netip.Addr) ([]string, Result, error) {
	if !addr.IsValid() {
		return nil, Result{}, &Error{Kind: InvalidName, Type: "PTR", Name: "invalid IP"}
	}
	name, err := mdns.ReverseAddr(addr.Unmap().WithZone("").String())
	if err != nil {
		return nil, Result{}, &Error{Kind: InvalidName, Type: "PTR", Name: addr.String(), Err: err}
	}
	ans, err := c.lookup(ctx, name, mdns.TypePTR)
	res := Result{Authentic: ans.authentic}
	if err != nil {
		return nil, res, err
	}
	out := make([]string, 0, len(ans.rrs))
	for _, rr := range ans.rrs {
		if p, ok := rr.(*mdns.PTR); ok {
			out = append(out, strings.ToLower(p.Ptr))
		}
	}
	return out, res, nil
}

// TLSA implements Resolver.
func (c *Client) TLSA(ctx context.Context, port int, proto, host string) ([]TLSA, Result, error) {
	name, err := tlsaName(port, proto, host)
	if err != nil {
		return nil, Result{}, err
	}
	ans, err := c.lookup(ctx, name, mdns.TypeTLSA)
	res := Result{Authentic: ans.authentic}
	if err != nil {
		return nil, res, err
	}
	out := make([]TLSA, 0, len(ans.rrs))
	for _, rr := range ans.rrs {
		t, ok := rr.(*mdns.TLSA)
		if !ok {
			continue
		}
		data, err := hex.DecodeString(t.Certificate)
		if err != nil {
			return nil, res, &Error{Kind: BadAnswer, Type: "TLSA", Name: name, Server: c.server, Err: err}
		}
		out = append(out, TLSA{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data})
	}
	return out, res, nil
}

// tlsaName is _port._proto.host (RFC 6698 §3).
func tlsaName(port int, proto, host string) (string, error) {
	name := "_" + strconv.Itoa(port) + "._" + proto + "." + host
	if port <= 0 || port > 65535 || proto == "" || strings.ContainsAny(proto, ". ") {
		return "", &Error{Kind: InvalidName, Type: "TLSA", Name: name}
	}
	return name, nil
}

// unescape turns miekg/dns's presentation form of a character-string
// (\" \\ and \DDD) back into its octets.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch != '\\' || i+1 >= len(s) {
			b = append(b, ch)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			n := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			if n <= 255 {
				b = append(b, byte(n))
				i += 3
				continue
			}
		}
		b = append(b, s[i+1])
		i++
	}
	return string(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// normalize returns name absolute and in lower case, or false if it is not
// a domain name (or is the root).
func normalize(name string) (string, bool) {
	n := strings.ToLower(mdns.Fqdn(name))
	if n == "." || len(n) > maxNameLen {
		return "", false
	}
	if _, ok := mdns.IsDomainName(n); !ok {
		return "", false
	}
	return n, true
}
