package smarthost

import (
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/dns"
)

func TestParseTransport(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		host    string
		port    int
		literal bool
		bad     bool
	}{
		{"[10.1.1.1]:2525", "10.1.1.1", 2525, true, false},
		{"[10.1.1.1]", "10.1.1.1", 25, true, false},
		{"relay.example.net:587", "relay.example.net", 587, false, false},
		{"relay.example.net", "relay.example.net", 25, false, false},
		{"[10.1.1.1", "", 0, false, true},
		{"[10.1.1.1]x", "", 0, false, true},
		{"host:99999", "", 0, false, true},
		{"", "", 0, false, true},
	} {
		d, err := parseTransport(tc.spec, 25)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: no error", tc.spec)
			}
			continue
		}
		if err != nil || d.host != tc.host || d.port != tc.port || d.literal != tc.literal {
			t.Errorf("%q = %+v, %v", tc.spec, d, err)
		}
	}
}

func TestRoute(t *testing.T) {
	cfg, err := Config{
		Dir: "x", Hostname: "h", LocalDomains: []string{"Example.COM"},
		Transports: map[string]string{"partner.test": "[10.1.1.1]:25"},
	}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	r := newRouter(cfg, dns.Mock{})
	for rcpt, class := range map[string]string{
		"a@example.com": destBackend, "b@EXAMPLE.com": destBackend,
		"c@partner.test": destTransport, "d@elsewhere.test": destMX,
	} {
		d, err := r.route(rcpt)
		if err != nil || d.class != class {
			t.Errorf("%s: %+v %v, want %s", rcpt, d, err, class)
		}
	}
	if _, err := r.route("nodomain"); err == nil || isTemporary(err) {
		t.Errorf("address without domain: %v", err)
	}
}

func TestIDsSortAndDiffer(t *testing.T) {
	base := time.Now()
	ids := make([]string, 1000)
	seen := make(map[string]bool)
	for i := range ids {
		ids[i] = newID(base.Add(time.Duration(i) * time.Microsecond))
		if seen[ids[i]] || !validID(ids[i]) {
			t.Fatalf("duplicate or invalid id %q", ids[i])
		}
		seen[ids[i]] = true
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatal("ids do not sort by time")
	}
}

func TestTemporaryClassification(t *testing.T) {
	if !isTemporary(errors.New("unknown")) {
		t.Error("unknown errors must be temporary")
	}
	if isTemporary(&DeliveryError{Permanent: true}) {
		t.Error("permanent DeliveryError reported temporary")
	}
}

func BenchmarkCommit4K(b *testing.B) {
	q, err := Open(Config{Dir: b.TempDir(), Hostname: "h", Resolver: dns.Mock{}})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	body := make([]byte, 4096)
	for i := range body {
		body[i] = 'a'
	}
	b.SetParallelism(10) // ~20 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d, err := q.NewDraft()
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = d.Write(body)
			if err := q.Commit(d, Envelope{From: "a@b.test", Rcpts: []string{"x@example.com"}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
