package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/internal/dns"
	"github.com/mxgate/mxgate/internal/dnstest"
)

var (
	code2   = netip.MustParseAddr("127.0.0.2")
	code4   = netip.MustParseAddr("127.0.0.4")
	code10  = netip.MustParseAddr("127.0.0.10")
	dblSpam = netip.MustParseAddr("127.0.1.2")
)

// zen is a ZEN-like zone: only its listed codes count.
func zen() Zone {
	return Zone{Zone: "zen.test", Codes: []Code{
		{Addr: code2, Symbol: "RBL_ZEN_SBL", Score: 4},
		{Addr: code4, Symbol: "RBL_ZEN_XBL", Score: 3},
		{Addr: code10, Symbol: "RBL_ZEN_PBL", Score: 1},
	}}
}

// bl is a zone without codes: any 127.0.0.0/8 answer counts.
func bl() Zone { return Zone{Zone: "bl.test", Score: 2} }

func dbl() Zone {
	return Zone{Zone: "dbl.test", Codes: []Code{{Addr: dblSpam, Symbol: "DBL_SPAM", Score: 5}}}
}

// lists is the DNS of the tests' block lists.
var lists = dnstest.Zone{
	"2.2.0.192.zen.test.": {A: []string{"127.0.0.2"}},                            // SBL
	"3.2.0.192.zen.test.": {A: []string{"127.0.0.3"}},                            // a code zen's config does not count
	"5.2.0.192.zen.test.": {A: []string{"127.255.255.254"}},                      // "query via public resolver"
	"6.2.0.192.zen.test.": {ServFail: true},                                      //
	"7.2.0.192.zen.test.": {Drop: true},                                          //
	"8.2.0.192.zen.test.": {A: []string{"127.0.0.2", "127.0.0.4", "127.0.0.10"}}, // SBL, XBL and PBL
	"9.2.0.192.bl.test.":  {A: []string{"192.0.2.99"}},                           // not a list's answer
	"2.2.0.192.bl.test.":  {A: []string{"127.0.0.2"}},
	"6.2.0.192.bl.test.":  {ServFail: true},
	"7.2.0.192.bl.test.":  {Drop: true},
	"1.0.0.127.zen.test.": {A: []string{"127.0.0.2"}}, // the e2e tests' client
	"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.test.": {A: []string{"127.0.0.4"}},
	"spammer.example.dbl.test.":    {A: []string{"127.0.1.2"}},
	"spam.co.uk.dbl.test.":         {A: []string{"127.0.1.2"}},
	"errcode.example.dbl.test.":    {A: []string{"127.255.255.252"}},
	"listed.example.metrics.test.": {A: []string{"127.0.0.2"}},
	"broken.example.metrics.test.": {ServFail: true},
	"2.2.0.192.metrics.test.":      {A: []string{"127.0.0.2"}},
	"4.2.0.192.metrics.test.":      {ServFail: true},
}

// resolver is a real internal/dns client of srv, without a cache so that
// the server sees every lookup the check makes.
func resolver(t *testing.T, srv *dnstest.Server) dns.Resolver {
	t.Helper()
	r, err := dns.New(dns.Options{Server: srv.Addr(), CacheSize: -1, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newCheck(t *testing.T, cfg Config) *Check {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// spool spools text (LF line ends become CRLF) and opens it.
func spool(t *testing.T, text string) *filter.Message {
	t.Helper()
	path := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "\n", "\r\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := filter.OpenMessage("Q1", path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func body(ip string, trusted bool, m *filter.Message) *filter.Body {
	return &filter.Body{Conn: &filter.Conn{ID: "S1", IP: netip.MustParseAddr(ip), Trusted: trusted}, Msg: m}
}

func names(syms []filter.Symbol) []string {
	out := make([]string, len(syms))
	for i, s := range syms {
		out[i] = s.Name
	}
	return out
}

func symbol(t *testing.T, res filter.Result, name string) filter.Symbol {
	t.Helper()
	for _, s := range res.Symbols {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no symbol %s in %v", name, res.Symbols)
	return filter.Symbol{}
}

func TestIPZones(t *testing.T) {
	srv := dnstest.Start(t, lists)
	c := newCheck(t, Config{Resolver: resolver(t, srv), IPZones: []Zone{zen(), bl()}})
	for _, tc := range []struct {
		name, ip string
		want     []string // symbols, in order
		score    float64
		detail   map[string]string
		err      bool
	}{
		{name: "counted code", ip: "192.0.2.2", want: []string{"RBL_ZEN_SBL", "RBL_BL_TEST"}, score: 4 + 2,
			detail: map[string]string{"RBL_ZEN_SBL": "192.0.2.2 127.0.0.2", "RBL_BL_TEST": "192.0.2.2 127.0.0.2"}},
		{name: "uncounted code is a miss", ip: "192.0.2.3", want: []string{}},
		{name: "NXDOMAIN is a miss", ip: "192.0.2.4", want: []string{}},
		{name: "several codes", ip: "192.0.2.8", want: []string{"RBL_ZEN_SBL", "RBL_ZEN_XBL", "RBL_ZEN_PBL"}, score: 4 + 3 + 1},
		{name: "error code is an error, not a hit", ip: "192.0.2.5", want: []string{"RBL_ZEN_TEST_ERROR"},
			detail: map[string]string{"RBL_ZEN_TEST_ERROR": "1 of 1 lookups failed: dnsbl 5.2.0.192.zen.test: error code 127.255.255.254"}},
		{name: "SERVFAIL in every zone", ip: "192.0.2.6", want: []string{"RBL_ZEN_TEST_ERROR", "RBL_BL_TEST_ERROR"}, err: true},
		{name: "answer outside 127/8", ip: "192.0.2.9", want: []string{"RBL_BL_TEST_ERROR"}},
		{name: "IPv6 nibbles", ip: "2001:db8::1", want: []string{"RBL_ZEN_XBL"}, score: 3,
			detail: map[string]string{"RBL_ZEN_XBL": "2001:db8::1 127.0.0.4"}},
		{name: "IPv4-mapped IPv6 is asked as IPv4", ip: "::ffff:192.0.2.2", want: []string{"RBL_ZEN_SBL", "RBL_BL_TEST"}, score: 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := c.CheckBody(context.Background(), body(tc.ip, false, nil))
			if got := names(res.Symbols); !slices.Equal(got, tc.want) {
				t.Fatalf("symbols %v (%v), want %v", got, res.Symbols, tc.want)
			}
			var score float64
			for _, s := range res.Symbols {
				score += s.Score
			}
			if score != tc.score {
				t.Errorf("score %v, want %v (%v)", score, tc.score, res.Symbols)
			}
			for name, d := range tc.detail {
				if got := symbol(t, res, name).Detail; got != d {
					t.Errorf("%s detail %q, want %q", name, got, d)
				}
			}
			if (res.Err != nil) != tc.err {
				t.Errorf("Err %v, want error: %v", res.Err, tc.err)
			}
			if tc.err && !errors.Is(res.Err, dns.ServFail) {
				t.Errorf("Err %v is not a SERVFAIL", res.Err)
			}
		})
	}
}

// Both zones drop the question: the lookups end at Config.Timeout, not
// at the resolver's 10 s, and the check has no answer at all.
func TestTimeout(t *testing.T) {
	srv := dnstest.Start(t, lists)
	c := newCheck(t, Config{Resolver: resolver(t, srv), IPZones: []Zone{zen(), bl()}, Timeout: 300 * time.Millisecond})
	start := time.Now()
	res := c.CheckIP(context.Background(), netip.MustParseAddr("192.0.2.7"))
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s with a 300ms timeout", d)
	}
	if !errors.Is(res.Err, dns.Timeout) || !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Errorf("Err %v, want a DNS timeout", res.Err)
	}
	if got := names(res.Symbols); !slices.Equal(got, []string{"RBL_ZEN_TEST_ERROR", "RBL_BL_TEST_ERROR"}) {
		t.Errorf("symbols %v", res.Symbols)
	}
	if srv.Queries("7.2.0.192.zen.test.", "A") == 0 || srv.Queries("7.2.0.192.bl.test.", "A") == 0 {
		t.Error("the dropped names were not asked")
	}
}

// Through the pipeline, a check whose every lookup failed counts neither as
// clean nor as spam: its symbols become DNSBL_ERROR.
func TestAllFailedThroughPipeline(t *testing.T) {
	srv := dnstest.Start(t, lists)
	c := newCheck(t, Config{Resolver: resolver(t, srv), IPZones: []Zone{zen(), bl()}})
	p := filter.New(filter.Config{Body: []filter.BodyCheck{c}})
	d := p.Body(context.Background(), body("192.0.2.6", false, nil), nil)
	if got := names(d.Symbols); !slices.Equal(got, []string{"DNSBL_ERROR"}) || len(d.Errors) != 1 || d.Score != 0 {
		t.Errorf("decision symbols %v, errors %v, score %v", d.Symbols, d.Errors, d.Score)
	}
}

func TestSkipped(t *testing.T) {
	srv := dnstest.Start(t, lists)
	listedURL := spool(t, "Subject: hi\n\nhttp://spammer.example/\n")
	for _, tc := range []struct {
		name        string
		skipPrivate bool
		b           *filter.Body
		queries     int
		want        []string
	}{
		{name: "trusted client", b: body("192.0.2.2", true, listedURL), queries: 0, want: []string{}},
		{name: "loopback skipped", skipPrivate: true, b: body("127.0.0.1", false, nil), queries: 0, want: []string{}},
		{name: "RFC 1918 skipped", skipPrivate: true, b: body("10.1.2.3", false, nil), queries: 0, want: []string{}},
		{name: "unique local skipped", skipPrivate: true, b: body("fd00::1", false, nil), queries: 0, want: []string{}},
		{name: "private skipped, URLs still asked", skipPrivate: true, b: body("127.0.0.1", false, listedURL), queries: 2, want: []string{"DBL_SPAM"}},
		{name: "loopback asked when not skipped", b: body("127.0.0.1", false, nil), queries: 2, want: []string{"RBL_ZEN_SBL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.ResetQueries()
			c := newCheck(t, Config{Resolver: resolver(t, srv), IPZones: []Zone{zen()}, DomainZones: []Zone{dbl()}, SkipPrivate: tc.skipPrivate})
			res := c.CheckBody(context.Background(), tc.b)
			if got := names(res.Symbols); !slices.Equal(got, tc.want) || res.Err != nil {
				t.Errorf("symbols %v, err %v; want %v", res.Symbols, res.Err, tc.want)
			}
			// Each lookup is an A and an AAAA question.
			if n := srv.TotalQueries(); n != tc.queries {
				t.Errorf("%d queries, want %d", n, tc.queries)
			}
		})
	}
}

func TestDomainZone(t *testing.T) {
	srv := dnstest.Start(t, lists)
	c := newCheck(t, Config{Resolver: resolver(t, srv), DomainZones: []Zone{dbl()}})
	m := spool(t, `From: a@b.example
Subject: offer
Content-Type: text/plain

Buy now: https://WWW.Mail.Spammer.Example/path?x=1 or http://spammer.example.
Or at http://user@a.b.spam.co.uk:8080/x and www.clean.example.
`)
	res := c.CheckBody(context.Background(), body("192.0.2.4", false, m))
	if got := names(res.Symbols); !slices.Equal(got, []string{"DBL_SPAM"}) || res.Err != nil {
		t.Fatalf("symbols %v, err %v", res.Symbols, res.Err)
	}
	s := res.Symbols[0]
	if s.Score != 5 || s.Detail != "spammer.example 127.0.1.2; spam.co.uk 127.0.1.2" {
		t.Errorf("symbol %+v", s)
	}
	// The registrable domains, each once; never the hosts as written.
	for name, want := range map[string]int{
		"spammer.example.dbl.test.":          1,
		"spam.co.uk.dbl.test.":               1,
		"clean.example.dbl.test.":            1,
		"www.mail.spammer.example.dbl.test.": 0,
		"mail.spammer.example.dbl.test.":     0,
		"a.b.spam.co.uk.dbl.test.":           0,
		"co.uk.dbl.test.":                    0,
		"www.clean.example.dbl.test.":        0,
		"b.example.dbl.test.":                0, // the header's addresses are not URLs
	} {
		if got := srv.Queries(name, "A"); got != want {
			t.Errorf("%s asked %d times, want %d", name, got, want)
		}
	}
	if n := srv.TotalQueries(); n != 3*2 {
		t.Errorf("%d queries, want 6 (3 domains, A and AAAA)", n)
	}
}

// An error code from a domain zone is an error symbol, and the IP zone's
// miss still counts: no Err.
func TestDomainZoneErrorCode(t *testing.T) {
	srv := dnstest.Start(t, lists)
	c := newCheck(t, Config{Resolver: resolver(t, srv), IPZones: []Zone{zen()}, DomainZones: []Zone{dbl()}})
	res := c.CheckBody(context.Background(), body("192.0.2.4", false, spool(t, "\nhttp://errcode.example/\n")))
	if got := names(res.Symbols); !slices.Equal(got, []string{"URIBL_DBL_TEST_ERROR"}) || res.Err != nil {
		t.Fatalf("symbols %v, err %v", res.Symbols, res.Err)
	}
	if d := res.Symbols[0].Detail; !strings.Contains(d, "error code 127.255.255.252") || res.Symbols[0].Score != 0 {
		t.Errorf("symbol %+v", res.Symbols[0])
	}
}

// Thirty domains, each written three ways: twenty are asked, the first
// twenty found, each once.
func TestDomainBoundAndDedup(t *testing.T) {
	srv := dnstest.Start(t, lists)
	c := newCheck(t, Config{Resolver: resolver(t, srv), DomainZones: []Zone{dbl()}})
	var b strings.Builder
	b.WriteString("Subject: many\n\n")
	for i := range 30 {
		fmt.Fprintf(&b, "http://d%02d.example/ https://www.d%02d.example/x HTTP://a.b.D%02d.example\n", i, i, i)
	}
	res := c.CheckBody(context.Background(), body("192.0.2.4", false, spool(t, b.String())))
	if len(res.Symbols) != 0 || res.Err != nil {
		t.Fatalf("symbols %v, err %v", res.Symbols, res.Err)
	}
	for i := range 30 {
		want := 0
		if i < DefaultMaxDomains {
			want = 1
		}
		if got := srv.Queries(fmt.Sprintf("d%02d.example.dbl.test.", i), "A"); got != want {
			t.Errorf("d%02d.example asked %d times, want %d", i, got, want)
		}
	}
	if n := srv.TotalQueries(); n != 2*DefaultMaxDomains {
		t.Errorf("%d queries, want %d", n, 2*DefaultMaxDomains)
	}
}

// URLHosts replaces the scanner; when it fails with no hosts, the domain
// zones failed, and with the IP zones skipped, the whole check did.
func TestURLHostsHook(t *testing.T) {
	srv := dnstest.Start(t, lists)
	hosts := func(context.Context, *filter.Message) ([]string, error) {
		return []string{"X.Spammer.Example", "1.2.3.4", "[2001:db8::1]", "co.uk", "localhost"}, nil
	}
	c := newCheck(t, Config{Resolver: resolver(t, srv), DomainZones: []Zone{dbl()}, URLHosts: hosts})
	res := c.CheckBody(context.Background(), body("127.0.0.1", false, spool(t, "\nno URL here\n")))
	if got := names(res.Symbols); !slices.Equal(got, []string{"DBL_SPAM"}) || srv.TotalQueries() != 2 {
		t.Errorf("symbols %v, %d queries", res.Symbols, srv.TotalQueries())
	}

	failing := func(context.Context, *filter.Message) ([]string, error) { return nil, errors.New("view broken") }
	c = newCheck(t, Config{Resolver: resolver(t, srv), IPZones: []Zone{zen()}, DomainZones: []Zone{dbl()}, URLHosts: failing, SkipPrivate: true})
	res = c.CheckBody(context.Background(), body("127.0.0.1", false, spool(t, "\n")))
	if got := names(res.Symbols); !slices.Equal(got, []string{"URIBL_DBL_TEST_ERROR"}) || res.Err == nil || !strings.Contains(res.Err.Error(), "view broken") {
		t.Errorf("symbols %v, err %v", res.Symbols, res.Err)
	}
}

func TestMetrics(t *testing.T) {
	srv := dnstest.Start(t, lists)
	count := func(result string) float64 {
		return testutil.ToFloat64(metricLookups.WithLabelValues("metrics.test", result))
	}
	before := map[string]float64{}
	for _, r := range []string{"hit", "miss", "error"} {
		before[r] = count(r)
	}
	c := newCheck(t, Config{Resolver: resolver(t, srv), IPZones: []Zone{{Zone: "metrics.test"}}})
	c2 := newCheck(t, Config{Resolver: resolver(t, srv), DomainZones: []Zone{{Zone: "metrics.test"}}})
	ctx := context.Background()
	c.CheckIP(ctx, netip.MustParseAddr("192.0.2.2")) // hit
	c.CheckIP(ctx, netip.MustParseAddr("192.0.2.3")) // miss
	c.CheckIP(ctx, netip.MustParseAddr("192.0.2.4")) // error
	m := spool(t, "\nhttp://listed.example/ http://broken.example/ http://x.example/\n")
	c2.CheckBody(ctx, body("192.0.2.1", false, m)) // hit, error, miss
	for _, tc := range []struct {
		result string
		want   float64
	}{{"hit", 2}, {"miss", 2}, {"error", 2}} {
		if got := count(tc.result) - before[tc.result]; got != tc.want {
			t.Errorf("mxgate_dnsbl_lookups_total{zone=metrics.test,result=%s} went up by %v, want %v", tc.result, got, tc.want)
		}
	}
}

// gated holds every lookup until more than limit are in flight together,
// or the lookup's context ends, and records the most that ever were.
type gated struct {
	dns.Mock
	limit          int32
	inflight, most atomic.Int32
	over           chan struct{}
	overOnce       sync.Once
}

func (g *gated) IP(ctx context.Context, host string) ([]netip.Addr, dns.Result, error) {
	n := g.inflight.Add(1)
	defer g.inflight.Add(-1)
	for {
		m := g.most.Load()
		if n <= m || g.most.CompareAndSwap(m, n) {
			break
		}
	}
	if n > g.limit {
		g.overOnce.Do(func() { close(g.over) })
	}
	select {
	case <-g.over:
		return g.Mock.IP(ctx, host)
	case <-ctx.Done():
		return nil, dns.Result{}, &dns.Error{Kind: dns.Timeout, Type: "A", Name: host, Err: ctx.Err()}
	}
}

// With Concurrency 4, a fifth lookup never starts while four are in
// flight: the four held by the gate wait for the check's deadline, and the
// other sixteen are not asked.
func TestConcurrencyBound(t *testing.T) {
	g := &gated{Mock: dns.Mock{}, limit: 4, over: make(chan struct{})}
	var b strings.Builder
	b.WriteString("\n")
	for i := range 20 {
		fmt.Fprintf(&b, "http://d%02d.example/\n", i)
	}
	c := newCheck(t, Config{Resolver: g, DomainZones: []Zone{dbl()}, Concurrency: 4, Timeout: 200 * time.Millisecond})
	res := c.CheckBody(context.Background(), body("192.0.2.1", false, spool(t, b.String())))
	if m := g.most.Load(); m != 4 {
		t.Errorf("at most %d lookups in flight, want 4", m)
	}
	if !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Errorf("Err %v, want the deadline", res.Err)
	}
}

func TestReverse(t *testing.T) {
	for ip, want := range map[string]string{
		"192.0.2.1":        "1.2.0.192",
		"2001:db8:1:2::ab": "b.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2",
	} {
		if got := reverse(netip.MustParseAddr(ip)); got != want {
			t.Errorf("reverse(%s) = %s, want %s", ip, got, want)
		}
	}
}

func TestNew(t *testing.T) {
	r := dns.Mock{}
	if got := DefaultSymbol("RBL_", "zen.spamhaus.org"); got != "RBL_ZEN_SPAMHAUS_ORG" {
		t.Errorf("DefaultSymbol = %s", got)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no resolver", Config{IPZones: []Zone{zen()}}},
		{"bad zone", Config{Resolver: r, IPZones: []Zone{{Zone: "bad zone"}}}},
		{"empty zone", Config{Resolver: r, IPZones: []Zone{{}}}},
		{"twice", Config{Resolver: r, DomainZones: []Zone{dbl(), dbl()}}},
		{"bad symbol", Config{Resolver: r, IPZones: []Zone{{Zone: "a.test", Symbol: "lower"}}}},
		{"IPv6 code", Config{Resolver: r, IPZones: []Zone{{Zone: "a.test", Codes: []Code{{Addr: netip.MustParseAddr("::1")}}}}}},
		{"code is an error code", Config{Resolver: r, IPZones: []Zone{{Zone: "a.test", Codes: []Code{{Addr: netip.MustParseAddr("127.255.255.254")}}}}}},
		{"negative timeout", Config{Resolver: r, Timeout: -1}},
	} {
		if _, err := New(tc.cfg); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	// An empty, non-nil ErrorCodes makes 127.255.255.254 a code like any.
	srv := dnstest.Start(t, lists)
	c := newCheck(t, Config{Resolver: resolver(t, srv), IPZones: []Zone{{Zone: "zen.test", ErrorCodes: []netip.Prefix{}}}})
	res := c.CheckIP(context.Background(), netip.MustParseAddr("192.0.2.5"))
	if got := names(res.Symbols); !slices.Equal(got, []string{"RBL_ZEN_TEST"}) {
		t.Errorf("symbols %v", res.Symbols)
	}
}
