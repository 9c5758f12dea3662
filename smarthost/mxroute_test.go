package smarthost

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/mxgate/mxgate/internal/dns"
)

// mxZone is the DNS of the MX routing tests.
var mxZone = dns.Mock{
	// MX by preference; a and c share one.
	"multi.test":   {MX: []dns.MX{{Host: "b.multi.test.", Pref: 20}, {Host: "a.multi.test.", Pref: 10}, {Host: "c.multi.test.", Pref: 10}}},
	"a.multi.test": {IP: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}},
	"b.multi.test": {IP: []netip.Addr{netip.MustParseAddr("192.0.2.2")}},
	"c.multi.test": {IP: []netip.Addr{netip.MustParseAddr("192.0.2.3")}},
	// No MX: the domain itself.
	"plain.test": {IP: []netip.Addr{netip.MustParseAddr("192.0.2.4")}},
	// No MX and no address.
	"bare.test": {TXT: []string{"v=spf1 -all"}},
	"null.test": {MX: []dns.MX{{Host: ".", Pref: 0}}},
	// A "." among other MX records is not a null MX.
	"halfnull.test":    {MX: []dns.MX{{Host: ".", Pref: 0}, {Host: "mx.halfnull.test.", Pref: 10}}},
	"mx.halfnull.test": {IP: []netip.Addr{netip.MustParseAddr("192.0.2.5")}},
	"servfail.test":    {Err: map[string]error{"MX": dns.ServFail}},
	"timeout.test":     {Err: map[string]error{"MX": dns.Timeout}},
	"invalid.test":     {Err: map[string]error{"MX": dns.InvalidName}},
	// MX hosts whose addresses cannot be had.
	"mxfail.test":       {MX: []dns.MX{{Host: "mx.mxfail.test.", Pref: 10}}},
	"mx.mxfail.test":    {Err: map[string]error{"IP": dns.ServFail}},
	"mxgone.test":       {MX: []dns.MX{{Host: "mx.nowhere.test.", Pref: 10}}},
	"plainfail.test":    {Err: map[string]error{"IP": dns.Timeout}},
	"onefails.test":     {MX: []dns.MX{{Host: "mx1.onefails.test.", Pref: 10}, {Host: "mx2.onefails.test.", Pref: 20}}},
	"mx1.onefails.test": {Err: map[string]error{"IP": dns.ServFail}},
	"mx2.onefails.test": {IP: []netip.Addr{netip.MustParseAddr("192.0.2.6")}},
}

func hopAddrs(hops []hop) []string {
	var out []string
	for _, h := range hops {
		out = append(out, h.name+"="+h.addr)
	}
	return out
}

// TestMXHopsFound: MX hosts by preference (equal ones in either order),
// each host's IPv4 then IPv6 addresses, at the outbound port; the domain
// itself when it has no MX; a "." among other MX records skipped.
func TestMXHopsFound(t *testing.T) {
	r := &router{dns: mxZone}
	ctx := context.Background()
	for _, tc := range []struct {
		domain string
		port   int
		want   [][]string // each inner list: hops in any order, lists in order
	}{
		{"multi.test", 25, [][]string{
			{"a.multi.test=192.0.2.1:25", "a.multi.test=[2001:db8::1]:25", "c.multi.test=192.0.2.3:25"},
			{"b.multi.test=192.0.2.2:25"},
		}},
		{"plain.test", 2525, [][]string{{"plain.test=192.0.2.4:2525"}}},
		{"halfnull.test", 25, [][]string{{"mx.halfnull.test=192.0.2.5:25"}}},
		{"onefails.test", 25, [][]string{{"mx2.onefails.test=192.0.2.6:25"}}},
	} {
		hops, err := r.mxHops(ctx, tc.domain, tc.port)
		if err != nil {
			t.Errorf("%s: %v", tc.domain, err)
			continue
		}
		got := hopAddrs(hops)
		var want []string
		for _, g := range tc.want {
			want = append(want, g...)
		}
		if len(got) != len(want) {
			t.Errorf("%s: hops %q, want %q", tc.domain, got, want)
			continue
		}
		i := 0
		for _, g := range tc.want {
			part := slices.Clone(got[i : i+len(g)])
			slices.Sort(part)
			w := slices.Clone(g)
			slices.Sort(w)
			if !slices.Equal(part, w) {
				t.Errorf("%s: hops %q, want %q (groups in order)", tc.domain, got, tc.want)
			}
			i += len(g)
		}
		// a.multi.test's addresses stay together, IPv4 first.
		if tc.domain == "multi.test" {
			ia := slices.Index(got, "a.multi.test=192.0.2.1:25")
			if ia < 0 || ia+1 >= len(got) || got[ia+1] != "a.multi.test=[2001:db8::1]:25" {
				t.Errorf("multi.test: hops %q: a.multi.test's IPv4 then IPv6 address", got)
			}
		}
	}
}

// TestMXHopsFailures: what each DNS answer makes of the recipients: null
// MX, NXDOMAIN, an invalid name and a domain without MX or address fail
// permanently with their status; SERVFAIL, timeouts and MX hosts without
// an address defer (4.4.3). The DNS error is kept in the chain.
func TestMXHopsFailures(t *testing.T) {
	r := &router{dns: mxZone}
	ctx := context.Background()
	for _, tc := range []struct {
		domain    string
		status    string
		permanent bool
		cause     error
	}{
		{"null.test", "5.1.10", true, dns.NullMX},
		{"gone.test", "5.1.2", true, dns.NXDomain},
		{"invalid.test", "5.1.2", true, dns.InvalidName},
		{"bare.test", "5.1.2", true, dns.NoData},
		{"servfail.test", "4.4.3", false, dns.ServFail},
		{"timeout.test", "4.4.3", false, dns.Timeout},
		{"mxfail.test", "4.4.3", false, dns.ServFail},
		{"mxgone.test", "4.4.3", false, dns.NXDomain},
		{"plainfail.test", "4.4.3", false, dns.Timeout},
	} {
		hops, err := r.mxHops(ctx, tc.domain, 25)
		var de *DeliveryError
		if !errors.As(err, &de) {
			t.Errorf("%s: hops %q, error %v; want a DeliveryError", tc.domain, hopAddrs(hops), err)
			continue
		}
		if de.Stage != "route" || de.Status != tc.status || de.Permanent != tc.permanent || isTemporary(err) == tc.permanent {
			t.Errorf("%s: %v (status %s, permanent %v); want %s, permanent %v", tc.domain, err, de.Status, de.Permanent, tc.status, tc.permanent)
		}
		if !errors.Is(err, tc.cause) {
			t.Errorf("%s: %v does not wrap %v", tc.domain, err, tc.cause)
		}
	}
}

// partialIP answers IP with the addresses of its Mock and a temporary
// error, as dns.Client does when A has addresses and AAAA failed.
type partialIP struct{ dns.Mock }

func (p partialIP) IP(ctx context.Context, host string) ([]netip.Addr, dns.Result, error) {
	addrs, res, err := p.Mock.IP(ctx, host)
	if err != nil {
		return nil, res, err
	}
	return addrs, res, &dns.Error{Kind: dns.ServFail, Type: "AAAA", Name: host + "."}
}

// TestMXHopsPartialAddresses: the IPv4 addresses of a host whose AAAA
// lookup failed temporarily are used.
func TestMXHopsPartialAddresses(t *testing.T) {
	r := &router{dns: partialIP{mxZone}}
	hops, err := r.mxHops(context.Background(), "plain.test", 25)
	if got := hopAddrs(hops); err != nil || !slices.Equal(got, []string{"plain.test=192.0.2.4:25"}) {
		t.Fatalf("hops %q, %v; want plain.test=192.0.2.4:25", got, err)
	}
}

// TestHopsTransport: a transport in brackets is dialled as it is, without
// DNS; one without brackets is routed by the MX of its host, at its port.
func TestHopsTransport(t *testing.T) {
	r := &router{dns: mxZone}
	ctx := context.Background()
	hops, err := r.hops(ctx, destination{class: destTransport, host: "nowhere.test", port: 2525, literal: true})
	if got := hopAddrs(hops); err != nil || !slices.Equal(got, []string{"nowhere.test=nowhere.test:2525"}) {
		t.Errorf("literal transport: hops %q, %v", got, err)
	}
	hops, err = r.hops(ctx, destination{class: destTransport, host: "halfnull.test", port: 587})
	if got := hopAddrs(hops); err != nil || !slices.Equal(got, []string{"mx.halfnull.test=192.0.2.5:587"}) {
		t.Errorf("transport by MX: hops %q, %v", got, err)
	}
}
