package dns

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Mock is a Resolver for unit tests, answering from a map of names to
// records:
//
//	dns.Mock{
//		"example.com":    {MX: []dns.MX{{Host: "mx.example.com.", Pref: 10}}},
//		"mx.example.com": {IP: []netip.Addr{netip.MustParseAddr("192.0.2.1")}},
//		"192.0.2.1":      {PTR: []string{"mx.example.com."}},
//		"_25._tcp.mx.example.com": {TLSA: []dns.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: sum}}},
//		"broken.example": {Err: map[string]error{"MX": dns.ServFail}},
//	}
//
// Keys are lower case, the final dot optional; PTR answers are keyed by the
// address, TLSA answers by the full _port._proto.host name. A name in the
// map without records of the type asked gets NODATA, a name not in the map
// NXDOMAIN. A Mock must not change while it is used; it is then safe for
// concurrent use.
type Mock map[string]MockRecords

// MockRecords are a Mock's answers for one name.
type MockRecords struct {
	MX   []MX
	IP   []netip.Addr
	TXT  []string // each string is one record of one character-string
	PTR  []string
	TLSA []TLSA
	// Err makes lookups of a type ("MX", "IP", "TXT", "PTR", "TLSA") fail.
	// A Kind (dns.ServFail, dns.Timeout, dns.NXDomain...) gives an *Error
	// of that kind; any other error is returned as it is.
	Err map[string]error
	// Authentic is reported in the Result of every lookup of the name.
	Authentic bool
}

var _ Resolver = Mock(nil)

// get returns the records of name and whether the name is in the map, or
// the error configured for typ.
func (m Mock) get(typ, name string) (MockRecords, error) {
	key := strings.TrimSuffix(strings.ToLower(name), ".")
	r, ok := m[key]
	if !ok {
		r, ok = m[key+"."]
	}
	if !ok {
		return r, &Error{Kind: NXDomain, Type: typ, Name: key + "."}
	}
	if err := r.Err[typ]; err != nil {
		if k, isKind := err.(Kind); isKind {
			return r, &Error{Kind: k, Type: typ, Name: key + "."}
		}
		return r, err
	}
	return r, nil
}

func noData(typ, name string) error {
	return &Error{Kind: NoData, Type: typ, Name: strings.TrimSuffix(strings.ToLower(name), ".") + "."}
}

// MX implements Resolver.
func (m Mock) MX(_ context.Context, domain string) ([]MX, Result, error) {
	r, err := m.get("MX", domain)
	res := Result{Authentic: r.Authentic}
	if err != nil {
		return nil, res, err
	}
	if len(r.MX) == 0 {
		return nil, res, noData("MX", domain)
	}
	out := slices.Clone(r.MX)
	sortMX(out)
	return out, res, nil
}

// IP implements Resolver.
func (m Mock) IP(_ context.Context, host string) ([]netip.Addr, Result, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap().WithZone("")}, Result{}, nil
	}
	r, err := m.get("IP", host)
	res := Result{Authentic: r.Authentic}
	if err != nil {
		return nil, res, err
	}
	if len(r.IP) == 0 {
		return nil, res, noData("IP", host)
	}
	return slices.Clone(r.IP), res, nil
}

// TXT implements Resolver.
func (m Mock) TXT(_ context.Context, name string) ([]TXT, Result, error) {
	r, err := m.get("TXT", name)
	res := Result{Authentic: r.Authentic}
	if err != nil {
		return nil, res, err
	}
	if len(r.TXT) == 0 {
		return nil, res, noData("TXT", name)
	}
	out := make([]TXT, len(r.TXT))
	for i, t := range r.TXT {
		out[i] = TXT{Strings: []string{t}, Text: t}
	}
	return out, res, nil
}

// PTR implements Resolver.
func (m Mock) PTR(_ context.Context, addr netip.Addr) ([]string, Result, error) {
	name := addr.Unmap().WithZone("").String()
	r, err := m.get("PTR", name)
	res := Result{Authentic: r.Authentic}
	if err != nil {
		return nil, res, err
	}
	if len(r.PTR) == 0 {
		return nil, res, noData("PTR", name)
	}
	return slices.Clone(r.PTR), res, nil
}

// TLSA implements Resolver.
func (m Mock) TLSA(_ context.Context, port int, proto, host string) ([]TLSA, Result, error) {
	name := "_" + strconv.Itoa(port) + "._" + proto + "." + host
	r, err := m.get("TLSA", name)
	res := Result{Authentic: r.Authentic}
	if err != nil {
		return nil, res, err
	}
	if len(r.TLSA) == 0 {
		return nil, res, noData("TLSA", name)
	}
	return slices.Clone(r.TLSA), res, nil
}
