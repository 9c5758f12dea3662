package smarthost

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ErrNXDomain is returned (wrapped) by a DNSResolver when the name does not
// exist.
var ErrNXDomain = errors.New("no such domain")

// DNSResolver looks up the records delivery needs. A name that exists
// without records of the type returns no records and no error.
type DNSResolver interface {
	LookupMX(ctx context.Context, domain string) ([]*net.MX, error)
	LookupAddr(ctx context.Context, host string) ([]netip.Addr, error)
}

// destination is where a group of recipients goes.
type destination struct {
	class   string // destBackend, destTransport or destMX
	host    string // transport host, or the domain for MX
	port    int
	literal bool // transport in brackets: no MX lookup
}

// key groups recipients into one SMTP transaction per destination.
func (d destination) key() string {
	return d.class + "|" + d.host + "|" + strconv.Itoa(d.port) + "|" + strconv.FormatBool(d.literal)
}

// hop is one address to try for a destination.
type hop struct {
	name string // for Remote-MTA and logs
	addr string // host:port to dial
}

type router struct {
	local      map[string]bool
	transports map[string]destination
	port       int
	dns        DNSResolver
}

func newRouter(cfg Config, res DNSResolver) *router {
	r := &router{
		local:      make(map[string]bool, len(cfg.LocalDomains)),
		transports: make(map[string]destination, len(cfg.Transports)),
		port:       cfg.OutboundPort,
		dns:        res,
	}
	for _, d := range cfg.LocalDomains {
		r.local[d] = true
	}
	for d, spec := range cfg.Transports {
		// Validated by Config.withDefaults.
		dest, _ := parseTransport(spec, cfg.OutboundPort)
		r.transports[d] = dest
	}
	return r
}

// parseTransport parses "[host]:port", "[host]", "host:port" or "host".
func parseTransport(spec string, defaultPort int) (destination, error) {
	d := destination{class: destTransport, port: defaultPort}
	s := strings.TrimSpace(spec)
	if s == "" {
		return d, errors.New("empty transport")
	}
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return d, fmt.Errorf("transport %q: missing ]", spec)
		}
		d.literal = true
		d.host = s[1:end]
		s = s[end+1:]
		if s != "" {
			if !strings.HasPrefix(s, ":") {
				return d, fmt.Errorf("transport %q: junk after ]", spec)
			}
			p, err := strconv.Atoi(s[1:])
			if err != nil || p <= 0 || p > 65535 {
				return d, fmt.Errorf("transport %q: bad port", spec)
			}
			d.port = p
		}
	} else if h, p, err := net.SplitHostPort(s); err == nil {
		port, err := strconv.Atoi(p)
		if err != nil || port <= 0 || port > 65535 {
			return d, fmt.Errorf("transport %q: bad port", spec)
		}
		d.host, d.port = h, port
	} else {
		d.host = s
	}
	if d.host == "" {
		return d, fmt.Errorf("transport %q: empty host", spec)
	}
	return d, nil
}

// route returns the destination of a recipient.
func (r *router) route(rcpt string) (destination, error) {
	dom := domainOf(rcpt)
	if dom == "" {
		// RFC 5321 §4.1.1.3: only postmaster may lack a domain, and
		// that is only meaningful to the receiving server.
		return destination{}, &DeliveryError{Stage: "route", Status: "5.1.3", Permanent: true,
			Message: "recipient address has no domain"}
	}
	if r.local[dom] {
		return destination{class: destBackend}, nil
	}
	if d, ok := r.transports[dom]; ok {
		return d, nil
	}
	return destination{class: destMX, host: dom, port: r.port}, nil
}

// hops returns the addresses to try, in order, for a transport or MX
// destination.
func (r *router) hops(ctx context.Context, d destination) ([]hop, error) {
	if d.literal {
		return []hop{{name: d.host, addr: net.JoinHostPort(d.host, strconv.Itoa(d.port))}}, nil
	}
	return r.mxHops(ctx, d.host, d.port)
}

// mxHops implements RFC 5321 §5.1: MX records by preference (random among
// equal ones), the domain itself when there is no MX, and RFC 7505 null MX.
func (r *router) mxHops(ctx context.Context, domain string, port int) ([]hop, error) {
	mxs, err := r.dns.LookupMX(ctx, domain)
	if errors.Is(err, ErrNXDomain) {
		return nil, &DeliveryError{Stage: "route", Status: "5.1.2", Permanent: true,
			Message: fmt.Sprintf("domain %s does not exist", domain), Err: err}
	}
	if err != nil {
		return nil, &DeliveryError{Stage: "route", Status: "4.4.3",
			Message: fmt.Sprintf("MX lookup for %s failed", domain), Err: err}
	}
	for _, mx := range mxs {
		if mx.Host == "." || mx.Host == "" {
			if len(mxs) == 1 {
				// RFC 7505 §3: the domain accepts no mail.
				return nil, &DeliveryError{Stage: "route", Status: "5.1.10", Permanent: true,
					Message: fmt.Sprintf("domain %s does not accept mail (null MX)", domain)}
			}
		}
	}
	implicit := len(mxs) == 0
	var hosts []string
	if implicit {
		hosts = []string{domain}
	} else {
		mxs = slices.Clone(mxs)
		rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
		slices.SortStableFunc(mxs, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
		for _, mx := range mxs {
			if h := strings.TrimSuffix(mx.Host, "."); h != "" {
				hosts = append(hosts, h)
			}
		}
	}
	var hops []hop
	var lookupErr error
	for _, h := range hosts {
		addrs, err := r.dns.LookupAddr(ctx, h)
		if err != nil {
			lookupErr = err
			continue
		}
		for _, a := range addrs {
			hops = append(hops, hop{name: h, addr: net.JoinHostPort(a.String(), strconv.Itoa(port))})
		}
	}
	if len(hops) > 0 {
		return hops, nil
	}
	if implicit && (lookupErr == nil || errors.Is(lookupErr, ErrNXDomain)) {
		return nil, &DeliveryError{Stage: "route", Status: "5.1.2", Permanent: true,
			Message: fmt.Sprintf("domain %s has no MX and no address", domain), Err: lookupErr}
	}
	return nil, &DeliveryError{Stage: "route", Status: "4.4.3",
		Message: fmt.Sprintf("no address for the mail exchangers of %s", domain), Err: lookupErr}
}

// dnsResolver queries DNS servers with miekg/dns, so that the configured
// resolver is used rather than whatever the system library picks.
type dnsResolver struct {
	servers []string
	udp     *dns.Client
	tcp     *dns.Client
}

func newDNSResolver(server string) (*dnsResolver, error) {
	r := &dnsResolver{
		udp: &dns.Client{Net: "udp", Timeout: 5 * time.Second},
		tcp: &dns.Client{Net: "tcp", Timeout: 10 * time.Second},
	}
	if server != "" {
		if _, _, err := net.SplitHostPort(server); err != nil {
			return nil, fmt.Errorf("dns resolver %q: %w", server, err)
		}
		r.servers = []string{server}
		return r, nil
	}
	conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return nil, fmt.Errorf("read system resolver configuration: %w", err)
	}
	for _, s := range conf.Servers {
		r.servers = append(r.servers, net.JoinHostPort(s, conf.Port))
	}
	if len(r.servers) == 0 {
		return nil, errors.New("no name servers in /etc/resolv.conf")
	}
	return r, nil
}

func (r *dnsResolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(1232, false)
	var lastErr error
	for _, s := range r.servers {
		resp, _, err := r.udp.ExchangeContext(ctx, m, s)
		if err == nil && resp.Truncated {
			resp, _, err = r.tcp.ExchangeContext(ctx, m, s)
		}
		if err != nil {
			lastErr = err
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess:
			return resp, nil
		case dns.RcodeNameError:
			return nil, fmt.Errorf("%s %s: %w", name, dns.TypeToString[qtype], ErrNXDomain)
		}
		lastErr = fmt.Errorf("server %s answered %s", s, dns.RcodeToString[resp.Rcode])
	}
	return nil, fmt.Errorf("dns %s %s: %w", name, dns.TypeToString[qtype], lastErr)
}

// LookupMX returns the MX records of domain.
func (r *dnsResolver) LookupMX(ctx context.Context, domain string) ([]*net.MX, error) {
	resp, err := r.query(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var out []*net.MX
	for _, rr := range resp.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
		}
	}
	return out, nil
}

// LookupAddr returns the IPv4 then IPv6 addresses of host.
func (r *dnsResolver) LookupAddr(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	var out []netip.Addr
	var errs []error
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		resp, err := r.query(ctx, host, t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rr := range resp.Answer {
			switch v := rr.(type) {
			case *dns.A:
				if a, ok := netip.AddrFromSlice(v.A); ok {
					out = append(out, a.Unmap())
				}
			case *dns.AAAA:
				if a, ok := netip.AddrFromSlice(v.AAAA); ok {
					out = append(out, a)
				}
			}
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	return nil, errors.Join(errs...)
}
