package auth

import (
	"context"
	"errors"
	"net"
	"net/netip"

	"github.com/mxgate/mxgate/internal/dns"
)

// The SPF, DKIM and DMARC libraries read DNS failures the way the standard
// library reports them: a *net.DNSError (not wrapped) whose IsNotFound says
// "no such records" (SPF none, no DKIM key, no DMARC policy) and whose
// Temporary() says "try again later" (temperror). netError turns an error
// of internal/dns into that: NXDOMAIN, NODATA and an invalid name are "not
// found" (RFC 7208 §4.3: a malformed domain is SPF none), every other
// failure, including one that is not from internal/dns, is temporary
// (dns.IsTemporary).
func netError(name string, err error) *net.DNSError {
	e := &net.DNSError{Name: name}
	kind := dns.KindOf(err)
	e.Err = "dns error"
	if kind != 0 {
		// The kind's text only: the underlying error may name the
		// resolver, and reasons end up in a header of the message.
		e.Err = kind.String()
	}
	switch {
	case dns.IsNotFound(err) || kind == dns.InvalidName:
		e.IsNotFound = true
	default:
		e.IsTemporary = true
		e.IsTimeout = kind == dns.Timeout
	}
	return e
}

// lookupTXT returns the TXT records of name as the libraries want them: one
// string per record, its character-strings joined (RFC 7208 §3.3, RFC 6376
// §3.6.2.2).
func lookupTXT(ctx context.Context, r dns.Resolver, name string) ([]string, error) {
	txts, _, err := r.TXT(ctx, name)
	if err != nil {
		return nil, netError(name, err)
	}
	out := make([]string, len(txts))
	for i, t := range txts {
		out[i] = t.Text
	}
	return out, nil
}

// txtFunc is the TXT lookup of go-msgauth's dkim and dmarc packages, which
// take no context: the check's context is bound into it.
func txtFunc(ctx context.Context, r dns.Resolver) func(string) ([]string, error) {
	return func(name string) ([]string, error) { return lookupTXT(ctx, r, name) }
}

// spfResolver is blitiri.com.ar/go/spf's DNSResolver over dns.Resolver, for
// one client address.
type spfResolver struct {
	r dns.Resolver
	// client4 is true for an IPv4 client: RFC 7208 §5.3 and §5.4 look up
	// only the address type of the connection, so a temporary failure of
	// the other type does not make the result a temperror.
	client4 bool
}

func (s *spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return lookupTXT(ctx, s.r, name)
}

func (s *spfResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	mxs, _, err := s.r.MX(ctx, name)
	if err != nil {
		return nil, netError(name, err)
	}
	out := make([]*net.MX, 0, len(mxs))
	for _, mx := range mxs {
		if mx.Host == "." {
			// The null MX (RFC 7505): no host, so no address to match.
			continue
		}
		out = append(out, &net.MX{Host: mx.Host, Pref: mx.Pref})
	}
	return out, nil
}

func (s *spfResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	addrs, _, err := s.r.IP(ctx, host)
	if err != nil {
		// dns.Resolver.IP returns the addresses of one type with the
		// temporary failure of the other: usable only when the failed
		// type is not the client's (an SPF check needs every address of
		// the client's type, see the dns.Resolver documentation).
		var de *dns.Error
		failed4 := errors.As(err, &de) && de.Type == "A"
		failed6 := de != nil && de.Type == "AAAA"
		if len(addrs) == 0 || !(failed4 && !s.client4 || failed6 && s.client4) {
			return nil, netError(host, err)
		}
	}
	out := make([]net.IPAddr, len(addrs))
	for i, a := range addrs {
		out[i] = net.IPAddr{IP: net.IP(a.AsSlice())}
	}
	return out, nil
}

func (s *spfResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Name: addr, Err: "not an IP address", IsNotFound: true}
	}
	names, _, err := s.r.PTR(ctx, a)
	if err != nil {
		return nil, netError(addr, err)
	}
	return names, nil
}
