package greylist

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newTest(t *testing.T, cfg Config) (*Greylister, *MemoryStore, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	cfg.Clock = clk.Now
	st, err := OpenMemoryStore("", nil)
	if err != nil {
		t.Fatal(err)
	}
	return New(cfg, st), st, clk
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func check(t *testing.T, g *Greylister, client, sender, rcpt string, want Result) Decision {
	t.Helper()
	d := g.Check(context.Background(), ip(client), sender, rcpt)
	if d.Result != want {
		t.Fatalf("Check(%s, %q, %q) = %+v, want %s", client, sender, rcpt, d, want)
	}
	wantPass := want != ResultNew && want != ResultEarlyRetry
	if d.Pass != wantPass {
		t.Fatalf("Check(%s, %q, %q).Pass = %v, want %v", client, sender, rcpt, d.Pass, wantPass)
	}
	return d
}

func TestNewEarlyRetryPass(t *testing.T) {
	g, _, clk := newTest(t, DefaultConfig())
	d := check(t, g, "192.0.2.10", "a@example.org", "u@example.com", ResultNew)
	if d.Retry != 3*time.Minute {
		t.Errorf("new Retry = %v, want 3m", d.Retry)
	}
	clk.Advance(time.Minute)
	d = check(t, g, "192.0.2.10", "a@example.org", "u@example.com", ResultEarlyRetry)
	if d.Retry != 2*time.Minute {
		t.Errorf("early retry Retry = %v, want 2m (FirstSeen must not reset)", d.Retry)
	}
	clk.Advance(time.Minute)
	check(t, g, "192.0.2.10", "a@example.org", "u@example.com", ResultEarlyRetry)
	clk.Advance(time.Minute) // exactly FirstSeen+Delay
	check(t, g, "192.0.2.10", "a@example.org", "u@example.com", ResultPassed)
	clk.Advance(time.Hour)
	check(t, g, "192.0.2.10", "a@example.org", "u@example.com", ResultPassed)
	// A different recipient is a different triplet.
	check(t, g, "192.0.2.10", "a@example.org", "v@example.com", ResultNew)
	// Recipient case does not matter; sender sub-address does not either.
	check(t, g, "192.0.2.10", "A+x@Example.ORG", "U@EXAMPLE.com", ResultPassed)
}

func TestIPv4Masking(t *testing.T) {
	g, _, clk := newTest(t, DefaultConfig())
	check(t, g, "192.0.2.10", "a@example.org", "u@example.com", ResultNew)
	clk.Advance(5 * time.Minute)
	// Another address in the same /24 retries (a pool of outbound MTAs).
	check(t, g, "192.0.2.200", "a@example.org", "u@example.com", ResultPassed)
	// IPv4-mapped IPv6 is the same network.
	check(t, g, "::ffff:192.0.2.7", "a@example.org", "u@example.com", ResultPassed)
	// A different /24 is not.
	check(t, g, "192.0.3.10", "a@example.org", "u@example.com", ResultNew)
}

func TestIPv6Masking(t *testing.T) {
	g, _, clk := newTest(t, DefaultConfig())
	check(t, g, "2001:db8:1:2::10", "a@example.org", "u@example.com", ResultNew)
	clk.Advance(5 * time.Minute)
	check(t, g, "2001:db8:1:2:ffff::1", "a@example.org", "u@example.com", ResultPassed)
	check(t, g, "2001:db8:1:3::10", "a@example.org", "u@example.com", ResultNew)
}

func TestCustomNetmask(t *testing.T) {
	g, _, _ := newTest(t, Config{NetmaskV4: 32, NetmaskV6: 128})
	if got := g.NetworkOf(ip("192.0.2.10")); got != "192.0.2.10/32" {
		t.Errorf("NetworkOf v4 = %s", got)
	}
	if got := g.NetworkOf(ip("2001:db8::1")); got != "2001:db8::1/128" {
		t.Errorf("NetworkOf v6 = %s", got)
	}
}

func TestRetryWindowExpiry(t *testing.T) {
	g, _, clk := newTest(t, DefaultConfig())
	check(t, g, "192.0.2.10", "a@example.org", "u@example.com", ResultNew)
	clk.Advance(3*time.Minute + 48*time.Hour) // window over, never retried
	d := check(t, g, "192.0.2.10", "a@example.org", "u@example.com", ResultNew)
	if d.Retry != 3*time.Minute {
		t.Errorf("Retry = %v", d.Retry)
	}
	clk.Advance(time.Minute)
	check(t, g, "192.0.2.10", "a@example.org", "u@example.com", ResultEarlyRetry)
	clk.Advance(2 * time.Minute)
	check(t, g, "192.0.2.10", "a@example.org", "u@example.com", ResultPassed)
}

func TestLifetimeExpiryAndRefresh(t *testing.T) {
	g, _, clk := newTest(t, DefaultConfig())
	check(t, g, "192.0.2.10", "a@example.org", "u@example.com", ResultNew)
	clk.Advance(4 * time.Minute)
	check(t, g, "192.0.2.10", "a@example.org", "u@example.com", ResultPassed)
	// Used every 30 days: the 36-day lifetime keeps being refreshed.
	for range 3 {
		clk.Advance(30 * 24 * time.Hour)
		check(t, g, "192.0.2.10", "a@example.org", "u@example.com", ResultPassed)
	}
	// Unused for the lifetime: new again.
	clk.Advance(36 * 24 * time.Hour)
	check(t, g, "192.0.2.10", "a@example.org", "u@example.com", ResultNew)
}

// pass takes a fresh triplet through new and passed.
func pass(t *testing.T, g *Greylister, clk *fakeClock, client, sender, rcpt string) {
	t.Helper()
	check(t, g, client, sender, rcpt, ResultNew)
	clk.Advance(3 * time.Minute)
	check(t, g, client, sender, rcpt, ResultPassed)
}

func TestAutoAllow(t *testing.T) {
	cfg := DefaultConfig()
	cfg.AutoAllowAfter = 3
	g, st, clk := newTest(t, cfg)
	pass(t, g, clk, "192.0.2.10", "a@example.org", "u@example.com")
	// Reusing a passed triplet is not a distinct pass.
	check(t, g, "192.0.2.10", "a@example.org", "u@example.com", ResultPassed)
	check(t, g, "192.0.2.10", "a@example.org", "u@example.com", ResultPassed)
	check(t, g, "192.0.2.11", "b@example.org", "u@example.com", ResultNew)
	pass(t, g, clk, "192.0.2.12", "c@example.org", "u@example.com")
	pass(t, g, clk, "192.0.2.13", "d@example.org", "u@example.com") // third distinct pass
	check(t, g, "192.0.2.99", "new@other.example", "x@example.com", ResultAutoAllowed)
	// Another network is not allowed.
	check(t, g, "198.51.100.1", "new@other.example", "x@example.com", ResultNew)

	// Use refreshes AllowedUntil.
	clk.Advance(30 * 24 * time.Hour)
	check(t, g, "192.0.2.1", "z@other.example", "x@example.com", ResultAutoAllowed)
	clk.Advance(30 * 24 * time.Hour)
	check(t, g, "192.0.2.1", "y@other.example", "x@example.com", ResultAutoAllowed)
	n, _, _ := st.GetNetwork(context.Background(), "192.0.2.0/24")
	if want := clk.t.Add(DefaultLifetime); !n.AllowedUntil.Equal(want) {
		t.Errorf("AllowedUntil = %v, want %v", n.AllowedUntil, want)
	}
	// Unused for the lifetime: no longer allowed, counting starts over.
	clk.Advance(DefaultLifetime)
	check(t, g, "192.0.2.1", "y@other.example", "x@example.com", ResultNew)
	clk.Advance(3 * time.Minute)
	check(t, g, "192.0.2.1", "y@other.example", "x@example.com", ResultPassed)
	n, _, _ = st.GetNetwork(context.Background(), "192.0.2.0/24")
	if n.Passes != 1 || !n.AllowedUntil.IsZero() {
		t.Errorf("network after lapse = %+v, want 1 pass, not allowed", n)
	}
}

func TestAutoAllowDisabled(t *testing.T) {
	cfg := DefaultConfig()
	cfg.AutoAllowAfter = 0
	g, st, clk := newTest(t, cfg)
	for _, s := range []string{"a", "b", "c", "d", "e", "f"} {
		pass(t, g, clk, "192.0.2.10", s+"@example.org", "u@example.com")
	}
	check(t, g, "192.0.2.10", "g@example.org", "u@example.com", ResultNew)
	if _, n := st.Len(); n != 0 {
		t.Errorf("%d networks stored with auto-allow disabled", n)
	}
}

func TestAllowLists(t *testing.T) {
	cfg := DefaultConfig()
	cfg.AllowNetworks = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:aa::/48")}
	cfg.AllowSenders = []string{"Friend@Partner.example", "trusted.example"}
	cfg.AllowRecipients = []string{"postmaster@example.com", "OPEN.example"}
	g, st, _ := newTest(t, cfg)
	for _, c := range []struct{ client, sender, rcpt string }{
		{"203.0.113.9", "a@x.example", "u@example.com"},
		{"::ffff:203.0.113.9", "a@x.example", "u@example.com"},
		{"2001:db8:aa:1::5", "a@x.example", "u@example.com"},
		{"192.0.2.1", "friend@partner.example", "u@example.com"},
		{"192.0.2.1", "FRIEND+list@partner.example", "u@example.com"},
		{"192.0.2.1", "prvs=1234abcd=friend@partner.example", "u@example.com"},
		{"192.0.2.1", "anyone@Trusted.Example", "u@example.com"},
		{"192.0.2.1", "a@x.example", "PostMaster@example.com"},
		{"192.0.2.1", "a@x.example", "anyone@open.example"},
	} {
		check(t, g, c.client, c.sender, c.rcpt, ResultAllowed)
	}
	if tr, n := st.Len(); tr != 0 || n != 0 {
		t.Errorf("allow lists touched the store: %d triplets, %d networks", tr, n)
	}
	// Near misses are greylisted.
	for _, c := range []struct{ client, sender, rcpt string }{
		{"203.0.114.9", "a@x.example", "u@example.com"},
		{"192.0.2.1", "other@partner.example", "u@example.com"},
		{"192.0.2.1", "a@sub.trusted.example", "u@example.com"},
		{"192.0.2.1", "a@x.example", "abuse@example.com"},
		{"192.0.2.1", "", "u@example.com"},
	} {
		check(t, g, c.client, c.sender, c.rcpt, ResultNew)
	}
}

type failingStore struct{ err error }

func (f failingStore) GetTriplet(context.Context, string) (Triplet, bool, error) {
	return Triplet{}, false, f.err
}
func (f failingStore) PutTriplet(context.Context, string, Triplet) error { return f.err }
func (f failingStore) GetNetwork(context.Context, string) (Network, bool, error) {
	return Network{}, false, f.err
}
func (f failingStore) PutNetwork(context.Context, string, Network) error { return f.err }

// putFailingStore reads fine but cannot write.
type putFailingStore struct {
	*MemoryStore
	err error
}

func (f putFailingStore) PutTriplet(context.Context, string, Triplet) error { return f.err }

func TestStoreErrorFailsOpen(t *testing.T) {
	boom := errors.New("no quorum")
	before := counterValue(t, ResultStoreError)
	for _, cfg := range []Config{DefaultConfig(), {AutoAllowAfter: 0}} {
		g := New(cfg, failingStore{err: boom})
		d := g.Check(context.Background(), ip("192.0.2.1"), "a@example.org", "u@example.com")
		if !d.Pass || d.Result != ResultStoreError || !errors.Is(d.Err, boom) {
			t.Errorf("Check with failing store = %+v", d)
		}
	}
	mem, _ := OpenMemoryStore("", nil)
	g := New(DefaultConfig(), putFailingStore{MemoryStore: mem, err: boom})
	if d := g.Check(context.Background(), ip("192.0.2.1"), "a@example.org", "u@example.com"); !d.Pass || d.Result != ResultStoreError {
		t.Errorf("Check with failing writes = %+v", d)
	}
	after := counterValue(t, ResultStoreError)
	if after-before != 3 {
		t.Errorf("store_error counter rose by %v, want 3", after-before)
	}
}

func TestMetricLabelsPrecreated(t *testing.T) {
	ch := make(chan prometheus.Metric, 16)
	metricDecisions.Collect(ch)
	close(ch)
	if n := len(ch); n != len(allResults) {
		t.Errorf("%d series, want %d", n, len(allResults))
	}
}

func TestDefaults(t *testing.T) {
	g := New(Config{}, failingStore{})
	c := g.Config()
	if c.Delay != 3*time.Minute || c.RetryWindow != 48*time.Hour || c.Lifetime != 36*24*time.Hour ||
		c.NetmaskV4 != 24 || c.NetmaskV6 != 64 || c.AutoAllowAfter != 0 {
		t.Errorf("New(Config{}) config = %+v", c)
	}
	if DefaultConfig().AutoAllowAfter != 5 {
		t.Error("DefaultConfig AutoAllowAfter != 5")
	}
}

// counterValue reads the decisions counter without prometheus/testutil
// (which would need go.mod changes).
func counterValue(t *testing.T, r Result) float64 {
	t.Helper()
	var m dto.Metric
	if err := metricDecisions.WithLabelValues(string(r)).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// Expired is the one expiry rule, which the Greylister and both stores
// follow: an entry is dead from the instant its end is reached.
func TestExpired(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		exp  time.Time
		want bool
	}{
		{now.Add(-time.Hour), true},
		{now, true},
		{now.Add(time.Nanosecond), false},
		{time.Time{}, true},
	} {
		if got := (Triplet{ExpiresAt: c.exp}).Expired(now); got != c.want {
			t.Errorf("triplet expiring at %v: Expired = %v", c.exp, got)
		}
	}
	for _, c := range []struct {
		n    Network
		want bool
	}{
		{Network{}, true},
		{Network{ExpiresAt: now}, true},
		{Network{ExpiresAt: now.Add(time.Nanosecond)}, false},
		{Network{ExpiresAt: now.Add(-time.Hour), AllowedUntil: now.Add(time.Nanosecond)}, false},
		{Network{ExpiresAt: now.Add(time.Hour), AllowedUntil: now.Add(-time.Hour)}, false},
		{Network{ExpiresAt: now.Add(-time.Hour), AllowedUntil: now}, true},
	} {
		if got := c.n.Expired(now); got != c.want {
			t.Errorf("%+v: Expired = %v, want %v", c.n, got, c.want)
		}
	}
}
