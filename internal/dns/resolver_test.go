package dns

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"

	"github.com/mxgate/mxgate/internal/dnstest"
	"github.com/mxgate/mxgate/internal/wait"
)

// fakeClock is the cache's clock in tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newClient returns a Client asking srv, with a fake clock; mod changes the
// options first.
func newClient(t *testing.T, srv *dnstest.Server, mod func(*Options)) (*Client, *fakeClock) {
	t.Helper()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	opts := Options{Server: srv.Addr(), Timeout: 2 * time.Second, Now: clock.Now}
	if mod != nil {
		mod(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c, clock
}

func wantKind(t *testing.T, what string, err error, want Kind) {
	t.Helper()
	if got := KindOf(err); got != want {
		t.Errorf("%s: error %v (kind %v), want kind %v", what, err, got, want)
	}
}

func counter(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func queriesMetric(t *testing.T, typ, result string) float64 {
	return counter(t, metricQueries.WithLabelValues(typ, result))
}

func TestMXByPreference(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{
		"example.test.": {MX: []dnstest.MX{
			{Pref: 30, Host: "MX3.example.test"}, {Pref: 10, Host: "mx1a.example.test"},
			{Pref: 20, Host: "mx2.example.test"}, {Pref: 10, Host: "mx1b.example.test"},
		}},
	})
	c, _ := newClient(t, srv, nil)
	mxs, res, err := c.MX(context.Background(), "Example.Test")
	if err != nil {
		t.Fatal(err)
	}
	prefs := []uint16{}
	hosts := map[string]bool{}
	for _, mx := range mxs {
		prefs = append(prefs, mx.Pref)
		hosts[mx.Host] = true
	}
	if !slices.Equal(prefs, []uint16{10, 10, 20, 30}) {
		t.Errorf("preferences %v, want 10 10 20 30", prefs)
	}
	for _, h := range []string{"mx1a.example.test.", "mx1b.example.test.", "mx2.example.test.", "mx3.example.test."} {
		if !hosts[h] {
			t.Errorf("host %s missing from %v", h, mxs)
		}
	}
	if mxs[2].Host != "mx2.example.test." || mxs[3].Host != "mx3.example.test." {
		t.Errorf("order %v", mxs)
	}
	if res.Authentic {
		t.Error("Authentic without DNSSEC")
	}
}

func TestNullMXAndMailHosts(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{
		"null.test.":     {MX: []dnstest.MX{{Pref: 0, Host: "."}}},
		"mail.test.":     {MX: []dnstest.MX{{Pref: 20, Host: "b.mail.test"}, {Pref: 10, Host: "a.mail.test"}}},
		"nomx.test.":     {A: []string{"192.0.2.7"}},
		"broken.test.":   {ServFail: true},
		"a.mail.test.":   {A: []string{"192.0.2.1"}},
		"b.mail.test.":   {AAAA: []string{"2001:db8::2"}},
		"mixnull.test.":  {MX: []dnstest.MX{{Pref: 0, Host: "."}, {Pref: 10, Host: "a.mail.test"}}},
		"dead.mx.test.":  {MX: []dnstest.MX{{Pref: 0, Host: "."}, {Pref: 5, Host: "."}}},
		"unused.a.test.": {},
	})
	c, _ := newClient(t, srv, nil)
	ctx := context.Background()

	mxs, _, err := c.MX(ctx, "null.test")
	if err != nil || !IsNullMX(mxs) {
		t.Errorf("MX null.test = %v, %v; want the null MX", mxs, err)
	}
	if _, _, _, err := MailHosts(ctx, c, "null.test"); !errors.Is(err, NullMX) || IsTemporary(err) || IsNotFound(err) {
		t.Errorf("MailHosts null.test: %v, want permanent NullMX", err)
	}
	if _, _, _, err := MailHosts(ctx, c, "dead.mx.test"); !errors.Is(err, NullMX) {
		t.Errorf("MailHosts with only . hosts: %v, want NullMX", err)
	}

	hosts, implicit, _, err := MailHosts(ctx, c, "mail.test")
	if err != nil || implicit || !slices.Equal(hosts, []string{"a.mail.test.", "b.mail.test."}) {
		t.Errorf("MailHosts mail.test = %v %v %v", hosts, implicit, err)
	}
	hosts, implicit, _, err = MailHosts(ctx, c, "mixnull.test")
	if err != nil || implicit || !slices.Equal(hosts, []string{"a.mail.test."}) {
		t.Errorf("MailHosts mixnull.test = %v %v %v; want the one real host", hosts, implicit, err)
	}

	// RFC 5321 §5.1: no MX records, the domain is its own mail host.
	hosts, implicit, _, err = MailHosts(ctx, c, "NoMX.test.")
	if err != nil || !implicit || !slices.Equal(hosts, []string{"nomx.test."}) {
		t.Errorf("MailHosts nomx.test = %v %v %v; want implicit nomx.test.", hosts, implicit, err)
	}
	addrs, _, err := c.IP(ctx, hosts[0])
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("192.0.2.7") {
		t.Errorf("IP of the implicit MX = %v, %v", addrs, err)
	}

	_, _, _, err = MailHosts(ctx, c, "nowhere.test")
	if !IsNXDomain(err) || IsTemporary(err) {
		t.Errorf("MailHosts nowhere.test: %v, want permanent NXDOMAIN", err)
	}
	_, _, _, err = MailHosts(ctx, c, "broken.test")
	if !IsTemporary(err) || IsNotFound(err) {
		t.Errorf("MailHosts broken.test: %v, want temporary", err)
	}
}

func TestIP(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{
		"both.test.":   {A: []string{"192.0.2.1", "192.0.2.2"}, AAAA: []string{"2001:db8::1"}},
		"v4.test.":     {A: []string{"192.0.2.3"}},
		"v6.test.":     {AAAA: []string{"2001:db8::3"}},
		"none.test.":   {MX: []dnstest.MX{{Pref: 1, Host: "x.test"}}},
		"half.test.":   {A: []string{"192.0.2.4"}, ServFail: true, FailTypes: []string{"AAAA"}},
		"broken.test.": {ServFail: true},
	})
	c, _ := newClient(t, srv, nil)
	ctx := context.Background()
	cases := []struct {
		host string
		want []string
		kind Kind
	}{
		{"both.test", []string{"192.0.2.1", "192.0.2.2", "2001:db8::1"}, 0},
		{"v4.test", []string{"192.0.2.3"}, 0},
		{"v6.test", []string{"2001:db8::3"}, 0},
		{"none.test", nil, NoData},
		{"missing.test", nil, NXDomain},
		{"broken.test", nil, ServFail},
		// The addresses found, and the other type's temporary failure.
		{"half.test", []string{"192.0.2.4"}, ServFail},
		{"192.0.2.9", []string{"192.0.2.9"}, 0},
		{"::ffff:192.0.2.10", []string{"192.0.2.10"}, 0},
	}
	for _, tc := range cases {
		addrs, _, err := c.IP(ctx, tc.host)
		var got []string
		for _, a := range addrs {
			got = append(got, a.String())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("IP %s = %v, want %v", tc.host, got, tc.want)
		}
		wantKind(t, "IP "+tc.host, err, tc.kind)
	}
	if n := srv.Queries("192.0.2.9.", "A"); n != 0 {
		t.Errorf("an IP literal was looked up (%d queries)", n)
	}
}

func TestTXT(t *testing.T) {
	long := strings.Repeat("a", 300) + "b"
	srv := dnstest.Start(t, dnstest.Zone{
		"example.test.": {
			TXT: []string{"v=spf1 -all", long, `quote" back\slash ` + "\x01\xff"},
			RR:  []string{`@ TXT "v=DKIM1; k=rsa; " "p=MIGf" "MA0G"`},
		},
	})
	c, _ := newClient(t, srv, nil)
	txts, _, err := c.TXT(context.Background(), "example.test")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, tx := range txts {
		if tx.Text != strings.Join(tx.Strings, "") {
			t.Errorf("Text %q is not the strings %q joined", tx.Text, tx.Strings)
		}
		got[tx.Text] = tx.Strings
	}
	if len(txts) != 4 {
		t.Errorf("%d records, want 4: %q", len(txts), txts)
	}
	if s := got["v=DKIM1; k=rsa; p=MIGfMA0G"]; !slices.Equal(s, []string{"v=DKIM1; k=rsa; ", "p=MIGf", "MA0G"}) {
		t.Errorf("multi-string record: strings %q, records %q", s, txts)
	}
	if s := got[long]; len(s) != 2 || len(s[0]) != 255 {
		t.Errorf("a 301-octet record: strings %q", s)
	}
	if _, ok := got[`quote" back\slash `+"\x01\xff"]; !ok {
		t.Errorf("quotes, backslashes and non-ASCII octets not returned as sent: %q", txts)
	}
	if _, ok := got["v=spf1 -all"]; !ok {
		t.Errorf("SPF record missing: %q", txts)
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:          "plain",
		`a\"b`:           `a"b`,
		`a\\b`:           `a\b`,
		`\001\255x`:      "\x01\xffx",
		`\256`:           "256", // not an octet: the backslash only escapes "2"
		`trailing\`:      `trailing\`,
		`\12`:            "12",
		`\0651`:          "A1",
		`mixed\;\032end`: "mixed; end",
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPTR(t *testing.T) {
	v4, _ := mdns.ReverseAddr("192.0.2.1")
	v6, _ := mdns.ReverseAddr("2001:db8::1")
	srv := dnstest.Start(t, dnstest.Zone{
		v4: {PTR: []string{"Mail.Example.test"}},
		v6: {PTR: []string{"a.example.test", "b.example.test"}},
	})
	c, _ := newClient(t, srv, nil)
	ctx := context.Background()
	names, _, err := c.PTR(ctx, netip.MustParseAddr("192.0.2.1"))
	if err != nil || !slices.Equal(names, []string{"mail.example.test."}) {
		t.Errorf("PTR 192.0.2.1 = %v, %v", names, err)
	}
	// An IPv4-mapped address is asked as IPv4.
	names, _, err = c.PTR(ctx, netip.MustParseAddr("::ffff:192.0.2.1"))
	if err != nil || len(names) != 1 {
		t.Errorf("PTR ::ffff:192.0.2.1 = %v, %v", names, err)
	}
	names, _, err = c.PTR(ctx, netip.MustParseAddr("2001:db8::1"))
	if err != nil || !slices.Equal(names, []string{"a.example.test.", "b.example.test."}) {
		t.Errorf("PTR 2001:db8::1 = %v, %v", names, err)
	}
	_, _, err = c.PTR(ctx, netip.MustParseAddr("192.0.2.2"))
	wantKind(t, "PTR without record", err, NXDomain)
	_, _, err = c.PTR(ctx, netip.Addr{})
	wantKind(t, "PTR of the zero Addr", err, InvalidName)
}

func TestTLSA(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{
		"_25._tcp.mx.example.test.": {TLSA: []dnstest.TLSA{
			{Usage: 3, Selector: 1, MatchingType: 1, Data: "0A0b0c"},
			{Usage: 2, Selector: 0, MatchingType: 2, Data: "ff"},
		}},
		"mx.example.test.": {A: []string{"192.0.2.1"}},
	})
	c, _ := newClient(t, srv, nil)
	ctx := context.Background()
	recs, _, err := c.TLSA(ctx, 25, "tcp", "mx.example.test.")
	if err != nil || len(recs) != 2 {
		t.Fatalf("TLSA = %v, %v", recs, err)
	}
	if r := recs[0]; r.Usage != 3 || r.Selector != 1 || r.MatchingType != 1 || string(r.Data) != "\x0a\x0b\x0c" {
		t.Errorf("first record %+v", r)
	}
	if r := recs[1]; r.Usage != 2 || r.Selector != 0 || r.MatchingType != 2 || string(r.Data) != "\xff" {
		t.Errorf("second record %+v", r)
	}
	_, _, err = c.TLSA(ctx, 465, "tcp", "mx.example.test")
	wantKind(t, "TLSA on another port", err, NXDomain)
	for _, bad := range []struct {
		port  int
		proto string
	}{{0, "tcp"}, {70000, "tcp"}, {25, ""}, {25, "t.cp"}} {
		_, _, err = c.TLSA(ctx, bad.port, bad.proto, "mx.example.test")
		wantKind(t, "TLSA with a bad port or protocol", err, InvalidName)
	}
	if n := srv.TotalQueries(); n != 2 {
		t.Errorf("%d queries sent, want 2 (none for invalid names)", n)
	}
}

func TestNXDomainVsNoData(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{
		"host.example.test.":             {A: []string{"192.0.2.1"}},
		"deep.below.empty.example.test.": {TXT: []string{"x"}},
	})
	c, _ := newClient(t, srv, nil)
	ctx := context.Background()

	_, _, err := c.MX(ctx, "nope.example.test")
	wantKind(t, "MX of a missing name", err, NXDomain)
	if !IsNotFound(err) || !IsNXDomain(err) || IsNoData(err) || IsTemporary(err) || !errors.Is(err, NXDomain) {
		t.Errorf("NXDOMAIN predicates wrong for %v", err)
	}
	_, _, err = c.MX(ctx, "host.example.test")
	wantKind(t, "MX of a name with only A", err, NoData)
	if !IsNotFound(err) || IsNXDomain(err) || !IsNoData(err) || IsTemporary(err) {
		t.Errorf("NODATA predicates wrong for %v", err)
	}
	// An empty non-terminal exists (RFC 8020): NODATA, not NXDOMAIN.
	_, _, err = c.TXT(ctx, "empty.example.test")
	wantKind(t, "TXT of an empty non-terminal", err, NoData)
	_, _, err = c.TXT(ctx, "host.example.test")
	wantKind(t, "TXT of a name with only A", err, NoData)

	var e *Error
	if !errors.As(err, &e) || e.Name != "host.example.test." || e.Type != "TXT" || e.Server != srv.Addr() {
		t.Errorf("error fields %+v", e)
	}
}

func TestServFailAndRefused(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{
		"fail.test.":    {ServFail: true},
		"refused.test.": {Refused: true},
	})
	c, _ := newClient(t, srv, nil)
	ctx := context.Background()
	before := queriesMetric(t, "TXT", resultServFail)
	_, _, err := c.TXT(ctx, "fail.test")
	wantKind(t, "SERVFAIL", err, ServFail)
	if !IsTemporary(err) || IsNotFound(err) {
		t.Errorf("SERVFAIL: temporary %v, not found %v", IsTemporary(err), IsNotFound(err))
	}
	if d := queriesMetric(t, "TXT", resultServFail) - before; d != 1 {
		t.Errorf("servfail counter went up by %v, want 1", d)
	}
	before = queriesMetric(t, "MX", resultError)
	_, _, err = c.MX(ctx, "refused.test")
	wantKind(t, "REFUSED", err, Refused)
	if !IsTemporary(err) {
		t.Error("REFUSED is not temporary")
	}
	if d := queriesMetric(t, "MX", resultError) - before; d != 1 {
		t.Errorf("error counter went up by %v for REFUSED, want 1", d)
	}
}

func TestTimeout(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{"slow.test.": {Drop: true}})
	c, _ := newClient(t, srv, func(o *Options) { o.Timeout = 400 * time.Millisecond })
	before := queriesMetric(t, "MX", resultTimeout)
	start := time.Now()
	_, _, err := c.MX(context.Background(), "slow.test")
	elapsed := time.Since(start)
	wantKind(t, "dropped query", err, Timeout)
	if !IsTemporary(err) {
		t.Error("a timeout is not temporary")
	}
	if elapsed < 350*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("answered after %s, want about the 400ms timeout", elapsed)
	}
	// The datagram is sent a second time after half the timeout.
	if n := srv.Queries("slow.test", "MX"); n != 2 {
		t.Errorf("server saw %d queries, want 2", n)
	}
	if d := queriesMetric(t, "MX", resultTimeout) - before; d != 1 {
		t.Errorf("timeout counter went up by %v, want 1", d)
	}
}

func TestCallerContext(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{"slow.test.": {Drop: true}})
	c, _ := newClient(t, srv, func(o *Options) { o.Timeout = 30 * time.Second })

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := c.TXT(ctx, "slow.test")
	if !errors.Is(err, context.DeadlineExceeded) || KindOf(err) != Timeout {
		t.Errorf("caller's deadline: %v", err)
	}
	if e := time.Since(start); e > 5*time.Second {
		t.Errorf("caller's 150ms deadline ended the lookup after %s", e)
	}

	ctx, cancel = context.WithCancel(context.Background())
	go func() {
		// Cancel once the query is on the wire.
		_ = wait.Until(10*time.Second, func() bool { return srv.Queries("slow.test", "MX") > 0 })
		cancel()
	}()
	start = time.Now()
	_, _, err = c.MX(ctx, "slow.test")
	if !errors.Is(err, context.Canceled) || !IsTemporary(err) {
		t.Errorf("cancelled caller: %v", err)
	}
	if e := time.Since(start); e > 5*time.Second {
		t.Errorf("cancellation ended the lookup after %s", e)
	}
}

func TestTCPFallback(t *testing.T) {
	var txts []string
	for i := range 40 {
		txts = append(txts, strings.Repeat(string(rune('a'+i%26)), 100))
	}
	srv := dnstest.Start(t, dnstest.Zone{"big.test.": {TXT: txts}})
	c, _ := newClient(t, srv, nil)
	got, _, err := c.TXT(context.Background(), "big.test")
	if err != nil || len(got) != 40 {
		t.Fatalf("TXT big.test: %d records, %v", len(got), err)
	}
	if srv.TCPQueries() != 1 || srv.Queries("big.test", "TXT") != 2 {
		t.Errorf("queries: %d over TCP, %d in all; want 1 and 2 (UDP truncated, then TCP)",
			srv.TCPQueries(), srv.Queries("big.test", "TXT"))
	}
}

func TestTooManyRecords(t *testing.T) {
	var addrs []string
	for i := range 600 {
		addrs = append(addrs, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String())
	}
	srv := dnstest.Start(t, dnstest.Zone{"many.test.": {A: addrs}})
	c, _ := newClient(t, srv, nil)
	_, _, err := c.IP(context.Background(), "many.test")
	wantKind(t, "600 A records", err, BadAnswer)
}

func TestCacheTTL(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{"host.test.": {A: []string{"192.0.2.1"}, TTL: 60}})
	c, clock := newClient(t, srv, nil)
	ctx := context.Background()
	hitsBefore := counter(t, metricCacheHits.WithLabelValues("A"))

	if _, _, err := c.IP(ctx, "host.test"); err != nil {
		t.Fatal(err)
	}
	// Changed while cached: the old answer is kept for its TTL.
	if err := srv.Set("host.test", dnstest.Records{A: []string{"192.0.2.2"}, TTL: 60}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(59 * time.Second)
	addrs, _, err := c.IP(ctx, "host.test")
	if err != nil || addrs[0].String() != "192.0.2.1" {
		t.Errorf("within the TTL: %v, %v; want the cached 192.0.2.1", addrs, err)
	}
	if n := srv.Queries("host.test", "A"); n != 1 {
		t.Errorf("%d A queries within the TTL, want 1", n)
	}
	if d := counter(t, metricCacheHits.WithLabelValues("A")) - hitsBefore; d != 1 {
		t.Errorf("A cache hits went up by %v, want 1", d)
	}
	clock.Advance(time.Second)
	addrs, _, err = c.IP(ctx, "host.test")
	if err != nil || addrs[0].String() != "192.0.2.2" {
		t.Errorf("after the TTL: %v, %v; want the new 192.0.2.2", addrs, err)
	}
	if n := srv.Queries("host.test", "A"); n != 2 {
		t.Errorf("%d A queries after the TTL, want 2", n)
	}
}

func TestCacheTTLClamps(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{
		"long.test.":  {TXT: []string{"x"}, TTL: 86400},
		"short.test.": {TXT: []string{"x"}, TTL: 1},
	})
	c, clock := newClient(t, srv, func(o *Options) { o.MinTTL = 30 * time.Second; o.MaxTTL = 120 * time.Second })
	ctx := context.Background()
	lookup := func() {
		for _, n := range []string{"long.test", "short.test"} {
			if _, _, err := c.TXT(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
	}
	lookup()
	clock.Advance(29 * time.Second)
	lookup()
	if a, b := srv.Queries("long.test", "TXT"), srv.Queries("short.test", "TXT"); a != 1 || b != 1 {
		t.Errorf("after 29s: %d and %d queries, want 1 and 1 (TTL 1 raised to MinTTL 30s)", a, b)
	}
	clock.Advance(2 * time.Second)
	lookup()
	if n := srv.Queries("short.test", "TXT"); n != 2 {
		t.Errorf("after 31s: %d queries for the TTL 1 name, want 2", n)
	}
	clock.Advance(90 * time.Second)
	lookup()
	if n := srv.Queries("long.test", "TXT"); n != 2 {
		t.Errorf("after 121s: %d queries for the TTL 86400 name, want 2 (MaxTTL 120s)", n)
	}
}

func TestCacheZeroTTL(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{"zero.test.": {RR: []string{"@ 0 IN A 192.0.2.1"}}})
	c, _ := newClient(t, srv, nil)
	for range 2 {
		if _, _, err := c.IP(context.Background(), "zero.test"); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Queries("zero.test", "A"); n != 2 {
		t.Errorf("%d queries for a TTL 0 record, want 2 (not cached)", n)
	}
}

func TestNegativeCache(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{"host.test.": {A: []string{"192.0.2.1"}}})
	srv.SetNegativeTTL(30)
	c, clock := newClient(t, srv, nil)
	ctx := context.Background()
	for range 2 {
		_, _, err := c.TXT(ctx, "missing.test")
		wantKind(t, "cached NXDOMAIN", err, NXDomain)
		_, _, err = c.MX(ctx, "host.test")
		wantKind(t, "cached NODATA", err, NoData)
	}
	if a, b := srv.Queries("missing.test", "TXT"), srv.Queries("host.test", "MX"); a != 1 || b != 1 {
		t.Errorf("NXDOMAIN asked %d times, NODATA %d times; want 1 and 1", a, b)
	}
	// Created while the negative answer is cached.
	if err := srv.Set("missing.test", dnstest.Records{TXT: []string{"now"}}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(29 * time.Second)
	_, _, err := c.TXT(ctx, "missing.test")
	wantKind(t, "NXDOMAIN within the SOA minimum", err, NXDomain)
	clock.Advance(time.Second)
	txts, _, err := c.TXT(ctx, "missing.test")
	if err != nil || len(txts) != 1 || txts[0].Text != "now" {
		t.Errorf("after the negative TTL: %v, %v", txts, err)
	}
}

func TestNegativeCacheMax(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{})
	srv.SetNegativeTTL(86400)
	c, clock := newClient(t, srv, func(o *Options) { o.MaxNegativeTTL = 10 * time.Second })
	ctx := context.Background()
	c.MX(ctx, "missing.test")
	clock.Advance(9 * time.Second)
	c.MX(ctx, "missing.test")
	if n := srv.Queries("missing.test", "MX"); n != 1 {
		t.Errorf("%d queries within MaxNegativeTTL, want 1", n)
	}
	clock.Advance(time.Second)
	c.MX(ctx, "missing.test")
	if n := srv.Queries("missing.test", "MX"); n != 2 {
		t.Errorf("%d queries after MaxNegativeTTL, want 2", n)
	}
}

func TestNoCacheForTemporaryFailures(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{"fail.test.": {ServFail: true}})
	c, _ := newClient(t, srv, nil)
	for range 3 {
		_, _, err := c.MX(context.Background(), "fail.test")
		wantKind(t, "SERVFAIL", err, ServFail)
	}
	if n := srv.Queries("fail.test", "MX"); n != 3 {
		t.Errorf("SERVFAIL asked %d times in 3 lookups, want 3 (never cached)", n)
	}
	if err := srv.Set("fail.test", dnstest.Records{MX: []dnstest.MX{{Pref: 1, Host: "mx.test"}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.MX(context.Background(), "fail.test"); err != nil {
		t.Errorf("after the failure was repaired: %v", err)
	}
}

func TestCacheCap(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{
		"a.test.": {TXT: []string{"a"}}, "b.test.": {TXT: []string{"b"}}, "c.test.": {TXT: []string{"c"}},
	})
	c, _ := newClient(t, srv, func(o *Options) { o.CacheSize = 2 })
	ctx := context.Background()
	for _, n := range []string{"a.test", "b.test", "a.test", "c.test", "a.test", "b.test"} {
		if _, _, err := c.TXT(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	// a b a(hit) c(evicts b, the least recently used) a(hit) b(miss, evicts c)
	for name, want := range map[string]int{"a.test": 1, "b.test": 2, "c.test": 1} {
		if n := srv.Queries(name, "TXT"); n != want {
			t.Errorf("%s asked %d times, want %d", name, n, want)
		}
	}
	if n := c.cache.len(); n != 2 {
		t.Errorf("cache holds %d entries, cap 2", n)
	}
}

func TestCacheDisabled(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{"a.test.": {TXT: []string{"a"}}})
	c, _ := newClient(t, srv, func(o *Options) { o.CacheSize = -1 })
	for range 2 {
		if _, _, err := c.TXT(context.Background(), "a.test"); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Queries("a.test", "TXT"); n != 2 {
		t.Errorf("%d queries without a cache, want 2", n)
	}
}

func TestAuthentic(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{
		"signed.test.":             {MX: []dnstest.MX{{Pref: 1, Host: "mx.signed.test"}}, AD: true},
		"unsigned.test.":           {MX: []dnstest.MX{{Pref: 1, Host: "mx.unsigned.test"}}},
		"_25._tcp.mx.signed.test.": {TLSA: []dnstest.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: "aa"}}, AD: true},
	})
	secure, _ := newClient(t, srv, func(o *Options) { o.DNSSEC = true })
	plain, _ := newClient(t, srv, nil)
	ctx := context.Background()

	if _, res, err := secure.MX(ctx, "signed.test"); err != nil || !res.Authentic {
		t.Errorf("signed name with DNSSEC: authentic %v, %v", res.Authentic, err)
	}
	if _, res, err := secure.TLSA(ctx, 25, "tcp", "mx.signed.test"); err != nil || !res.Authentic {
		t.Errorf("signed TLSA with DNSSEC: authentic %v, %v", res.Authentic, err)
	}
	if _, res, err := secure.MX(ctx, "unsigned.test"); err != nil || res.Authentic {
		t.Errorf("unsigned name: authentic %v, %v", res.Authentic, err)
	}
	if _, res, err := plain.MX(ctx, "signed.test"); err != nil || res.Authentic {
		t.Errorf("signed name without the DNSSEC option: authentic %v, %v", res.Authentic, err)
	}
	// From the cache, the same.
	if _, res, _ := secure.MX(ctx, "signed.test"); !res.Authentic {
		t.Error("cached answer lost its AD bit")
	}
	// Authenticated denial.
	srv.SetAuthentic(true)
	_, res, err := secure.TXT(ctx, "missing.test")
	if !IsNXDomain(err) || !res.Authentic {
		t.Errorf("authenticated NXDOMAIN: authentic %v, %v", res.Authentic, err)
	}
}

func TestCNAME(t *testing.T) {
	zone := dnstest.Zone{
		"alias.test.":    {CNAME: "mid.test."},
		"mid.test.":      {CNAME: "real.test."},
		"real.test.":     {MX: []dnstest.MX{{Pref: 5, Host: "mx.real.test"}}, A: []string{"192.0.2.5"}},
		"dangling.test.": {CNAME: "gone.test."},
		"loop1.test.":    {CNAME: "loop2.test."},
		"loop2.test.":    {CNAME: "loop1.test."},
		"nodata.test.":   {CNAME: "real.test."},
	}
	for i := range 10 {
		zone[chainName(i)] = dnstest.Records{CNAME: chainName(i + 1)}
	}
	zone[chainName(10)] = dnstest.Records{A: []string{"192.0.2.10"}}

	for _, follow := range []bool{true, false} {
		t.Run(map[bool]string{true: "resolver follows", false: "client follows"}[follow], func(t *testing.T) {
			srv := dnstest.Start(t, zone)
			srv.SetFollowCNAME(follow)
			c, _ := newClient(t, srv, nil)
			ctx := context.Background()

			mxs, _, err := c.MX(ctx, "alias.test")
			if err != nil || len(mxs) != 1 || mxs[0].Host != "mx.real.test." {
				t.Errorf("MX through two CNAMEs = %v, %v", mxs, err)
			}
			addrs, _, err := c.IP(ctx, "alias.test")
			if err != nil || len(addrs) != 1 || addrs[0].String() != "192.0.2.5" {
				t.Errorf("IP through two CNAMEs = %v, %v", addrs, err)
			}
			_, _, err = c.MX(ctx, "dangling.test")
			wantKind(t, "CNAME to a missing name", err, NXDomain)
			_, _, err = c.TXT(ctx, "nodata.test")
			wantKind(t, "CNAME to a name without TXT", err, NoData)
			_, _, err = c.MX(ctx, "loop1.test")
			wantKind(t, "CNAME loop", err, BadAnswer)
			_, _, err = c.IP(ctx, chainName(0))
			wantKind(t, "chain of 10 CNAMEs", err, BadAnswer)
			addrs, _, err = c.IP(ctx, chainName(3))
			if err != nil || len(addrs) != 1 {
				t.Errorf("chain of 7 CNAMEs: %v, %v", addrs, err)
			}

			// The whole chain is cached under the name asked for.
			srv.ResetQueries()
			if _, _, err := c.MX(ctx, "alias.test"); err != nil {
				t.Fatal(err)
			}
			if n := srv.TotalQueries(); n != 0 {
				t.Errorf("%d queries for a cached chain, want 0", n)
			}
		})
	}
}

func chainName(i int) string { return "c" + string(rune('a'+i)) + ".chain.test." }

func TestInvalidNames(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{})
	c, _ := newClient(t, srv, nil)
	ctx := context.Background()
	for _, n := range []string{"", ".", "a..b", strings.Repeat("a", 64) + ".test", strings.Repeat("abcdefghi.", 26) + "test"} {
		_, _, err := c.MX(ctx, n)
		wantKind(t, "MX "+n, err, InvalidName)
		if IsTemporary(err) || IsNotFound(err) {
			t.Errorf("invalid name %q: temporary %v, not found %v", n, IsTemporary(err), IsNotFound(err))
		}
	}
	if n := srv.TotalQueries(); n != 0 {
		t.Errorf("%d queries sent for invalid names", n)
	}
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("search example.org\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{ResolvConf: conf})
	if err != nil || c.Server() != "192.0.2.53:53" {
		t.Errorf("from resolv.conf: server %v, %v; want the first nameserver", c, err)
	}
	empty := filepath.Join(dir, "empty.conf")
	if err := os.WriteFile(empty, []byte("search example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for what, o := range map[string]Options{
		"no nameserver":     {ResolvConf: empty},
		"no resolv.conf":    {ResolvConf: filepath.Join(dir, "missing")},
		"no port":           {Server: "127.0.0.1"},
		"bad port":          {Server: "127.0.0.1:x"},
		"no host":           {Server: ":53"},
		"min above max TTL": {Server: "127.0.0.1:53", MinTTL: time.Hour, MaxTTL: time.Minute},
		"negative timeout":  {Server: "127.0.0.1:53", Timeout: -1},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New succeeded", what)
		}
	}
	if c, err := New(Options{Server: "[::1]:5353"}); err != nil || c.Server() != "[::1]:5353" {
		t.Errorf("IPv6 server: %v, %v", c, err)
	}
}

func TestErrors(t *testing.T) {
	err := error(&Error{Kind: ServFail, Type: "MX", Name: "example.com.", Server: "127.0.0.1:53"})
	if s := err.Error(); !strings.Contains(s, "MX example.com.") || !strings.Contains(s, "SERVFAIL") || !strings.Contains(s, "127.0.0.1:53") {
		t.Errorf("message %q lacks the type, name, kind or server", s)
	}
	wrapped := errors.Join(errors.New("context"), err)
	if !errors.Is(wrapped, ServFail) || errors.Is(wrapped, NXDomain) || KindOf(wrapped) != ServFail {
		t.Error("kind lost through wrapping")
	}
	if !IsTemporary(errors.New("unknown")) {
		t.Error("an unknown error is not temporary")
	}
	if IsTemporary(nil) || IsNotFound(nil) || KindOf(nil) != 0 {
		t.Error("nil is an error")
	}
	if !IsNotFound(NoData) || IsTemporary(NXDomain) || !IsTemporary(Timeout) {
		t.Error("bare kinds misclassified")
	}
}

func TestMetricsOK(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{"x.test.": {TXT: []string{"x"}}})
	c, _ := newClient(t, srv, nil)
	ok, nx, nodata := queriesMetric(t, "TXT", resultOK), queriesMetric(t, "TXT", resultNXDomain), queriesMetric(t, "MX", resultNoData)
	c.TXT(context.Background(), "x.test")
	c.TXT(context.Background(), "y.test")
	c.MX(context.Background(), "x.test")
	if queriesMetric(t, "TXT", resultOK)-ok != 1 || queriesMetric(t, "TXT", resultNXDomain)-nx != 1 || queriesMetric(t, "MX", resultNoData)-nodata != 1 {
		t.Error("ok, nxdomain and nodata counters did not go up by one each")
	}
	var m dto.Metric
	if err := metricQueryDuration.WithLabelValues("TXT").(interface{ Write(*dto.Metric) error }).Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.GetHistogram().GetSampleCount() < 2 {
		t.Errorf("duration histogram has %d samples, want at least 2", m.GetHistogram().GetSampleCount())
	}
}

func TestConcurrentLookups(t *testing.T) {
	srv := dnstest.Start(t, dnstest.Zone{
		"a.test.": {A: []string{"192.0.2.1"}, AAAA: []string{"2001:db8::1"}, TTL: 1},
	})
	c, clock := newClient(t, srv, func(o *Options) { o.CacheSize = 4 })
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			addrs, _, err := c.IP(context.Background(), "a.test")
			if err != nil || len(addrs) != 2 {
				t.Errorf("goroutine %d: %v, %v", i, addrs, err)
			}
			clock.Advance(time.Second)
		})
	}
	wg.Wait()
}
