package dns

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestMock(t *testing.T) {
	boom := errors.New("boom")
	var r Resolver = Mock{
		"example.com": {
			MX:  []MX{{Host: "mx2.example.com.", Pref: 20}, {Host: "mx1.example.com.", Pref: 10}},
			TXT: []string{"v=spf1 mx -all"},
		},
		"mx1.example.com.":         {IP: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, Authentic: true},
		"192.0.2.1":                {PTR: []string{"mx1.example.com."}},
		"_25._tcp.mx1.example.com": {TLSA: []TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{1}}}},
		"broken.example":           {Err: map[string]error{"MX": ServFail, "TXT": boom}},
	}
	ctx := context.Background()

	mxs, _, err := r.MX(ctx, "Example.COM.")
	if err != nil || !slices.Equal(mxs, []MX{{"mx1.example.com.", 10}, {"mx2.example.com.", 20}}) {
		t.Errorf("MX = %v, %v; want by preference", mxs, err)
	}
	txts, _, err := r.TXT(ctx, "example.com")
	if err != nil || len(txts) != 1 || txts[0].Text != "v=spf1 mx -all" || !slices.Equal(txts[0].Strings, []string{"v=spf1 mx -all"}) {
		t.Errorf("TXT = %v, %v", txts, err)
	}
	addrs, res, err := r.IP(ctx, "mx1.example.com")
	if err != nil || len(addrs) != 1 || !res.Authentic {
		t.Errorf("IP = %v, %v, %v; want one authentic address", addrs, res, err)
	}
	names, _, err := r.PTR(ctx, netip.MustParseAddr("::ffff:192.0.2.1"))
	if err != nil || !slices.Equal(names, []string{"mx1.example.com."}) {
		t.Errorf("PTR = %v, %v", names, err)
	}
	tlsa, _, err := r.TLSA(ctx, 25, "tcp", "mx1.example.com.")
	if err != nil || len(tlsa) != 1 || tlsa[0].Usage != 3 {
		t.Errorf("TLSA = %v, %v", tlsa, err)
	}

	_, _, err = r.IP(ctx, "example.com")
	wantKind(t, "Mock IP of a name with other records", err, NoData)
	_, _, err = r.MX(ctx, "nowhere.example")
	wantKind(t, "Mock MX of a missing name", err, NXDomain)
	_, _, err = r.MX(ctx, "broken.example")
	wantKind(t, "Mock MX with ServFail", err, ServFail)
	var e *Error
	if !errors.As(err, &e) || e.Name != "broken.example." || e.Type != "MX" {
		t.Errorf("Mock error fields: %+v", e)
	}
	_, _, err = r.TXT(ctx, "broken.example")
	if !errors.Is(err, boom) || !IsTemporary(err) {
		t.Errorf("Mock TXT with a plain error: %v", err)
	}
	_, _, err = r.IP(ctx, "broken.example")
	wantKind(t, "Mock IP of a name with only errors", err, NoData)

	// MailHosts over the Mock, as route.go will use it.
	hosts, implicit, _, err := MailHosts(ctx, r, "example.com")
	if err != nil || implicit || !slices.Equal(hosts, []string{"mx1.example.com.", "mx2.example.com."}) {
		t.Errorf("MailHosts = %v %v %v", hosts, implicit, err)
	}
	_, _, _, err = MailHosts(ctx, r, "broken.example")
	if !IsTemporary(err) {
		t.Errorf("MailHosts on SERVFAIL: %v, want temporary", err)
	}
	hosts, implicit, _, err = MailHosts(ctx, r, "mx1.example.com")
	if err != nil || !implicit || !slices.Equal(hosts, []string{"mx1.example.com."}) {
		t.Errorf("MailHosts without MX = %v %v %v; want implicit", hosts, implicit, err)
	}

	// The Mock's slices are not handed out.
	mxs[0].Host = "changed."
	if again, _, _ := r.MX(ctx, "example.com"); again[0].Host != "mx1.example.com." {
		t.Error("a caller changed the Mock's records")
	}
}

func TestCacheLRU(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newCache(2)
	k := func(n string) cacheKey { return cacheKey{name: n, qtype: 1} }
	c.put(k("a"), answer{kind: NoData}, now.Add(time.Minute))
	c.put(k("b"), answer{}, now.Add(time.Minute))
	if _, _, ok := c.get(k("a"), now); !ok {
		t.Fatal("a missing")
	}
	c.put(k("c"), answer{}, now.Add(time.Minute)) // evicts b
	if _, _, ok := c.get(k("b"), now); ok {
		t.Error("b, the least recently used, was not evicted")
	}
	ans, exp, ok := c.get(k("a"), now.Add(59*time.Second))
	if !ok || ans.kind != NoData || !exp.Equal(now.Add(time.Minute)) {
		t.Errorf("a = %v %v %v", ans, exp, ok)
	}
	if _, _, ok := c.get(k("a"), now.Add(time.Minute)); ok {
		t.Error("a returned at its expiry")
	}
	if c.len() != 1 {
		t.Errorf("%d entries after the expired one was dropped, want 1", c.len())
	}
	c.put(k("c"), answer{kind: NXDomain}, now.Add(time.Hour))
	if ans, _, _ := c.get(k("c"), now); ans.kind != NXDomain || c.len() != 1 {
		t.Error("put of an existing key did not replace it")
	}
}
