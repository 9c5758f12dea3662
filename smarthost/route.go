package smarthost

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/mxgate/mxgate/internal/dns"
)

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
	dns        dns.Resolver
}

func newRouter(cfg Config, res dns.Resolver) *router {
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

// mxHops implements RFC 5321 §5.1 with dns.MailHosts (README "Delivery"):
// the MX hosts by preference (random among equal ones), the domain itself
// when it has no MX, and the null MX of RFC 7505, which fails at once.
//
// A domain that does not exist, a null MX, and a domain without MX whose
// own name has no address fail permanently; any temporary DNS failure, and
// MX hosts none of which has an address, defer.
func (r *router) mxHops(ctx context.Context, domain string, port int) ([]hop, error) {
	hosts, implicit, _, err := dns.MailHosts(ctx, r.dns, domain)
	switch {
	case errors.Is(err, dns.NullMX):
		return nil, &DeliveryError{Stage: "route", Status: "5.1.10", Permanent: true,
			Message: fmt.Sprintf("domain %s does not accept mail (null MX)", domain), Err: err}
	case dns.IsNXDomain(err):
		return nil, &DeliveryError{Stage: "route", Status: "5.1.2", Permanent: true,
			Message: fmt.Sprintf("domain %s does not exist", domain), Err: err}
	case errors.Is(err, dns.InvalidName):
		// Nothing was asked: asking again cannot help.
		return nil, &DeliveryError{Stage: "route", Status: "5.1.2", Permanent: true,
			Message: fmt.Sprintf("%s is not a valid domain name", domain), Err: err}
	case err != nil:
		return nil, &DeliveryError{Stage: "route", Status: "4.4.3",
			Message: fmt.Sprintf("MX lookup for %s failed", domain), Err: err}
	}
	var hops []hop
	var lookupErr error
	for _, h := range hosts {
		// The addresses found are used even when the other family failed
		// temporarily: one reachable address is enough to deliver.
		addrs, _, err := r.dns.IP(ctx, h)
		if err != nil {
			lookupErr = err
		}
		name := strings.TrimSuffix(h, ".")
		for _, a := range addrs {
			hops = append(hops, hop{name: name, addr: net.JoinHostPort(a.String(), strconv.Itoa(port))})
		}
	}
	if len(hops) > 0 {
		return hops, nil
	}
	if implicit && dns.IsNotFound(lookupErr) {
		return nil, &DeliveryError{Stage: "route", Status: "5.1.2", Permanent: true,
			Message: fmt.Sprintf("domain %s has no MX and no address", domain), Err: lookupErr}
	}
	return nil, &DeliveryError{Stage: "route", Status: "4.4.3",
		Message: fmt.Sprintf("no address for the mail exchangers of %s", domain), Err: lookupErr}
}
