package clamav

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/filter/bayes/redistest"
)

// A verdict put in Redis is read back under the prefix, with Redis'
// expiry set to the TTL; a missing key is a miss, not an error.
func TestRedisCacheRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	c := NewRedisCache(RedisCacheOptions{Addr: srv.Addr})
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	if _, ok, err := c.Get(ctx, "absent"); ok || err != nil {
		t.Fatalf("absent key: ok %v, err %v", ok, err)
	}
	want := Result{Infected: true, Virus: "Test.Virus", Raw: "stream: Test.Virus FOUND"}
	if err := c.Put(ctx, "k1", want, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, "k2", Result{Raw: "stream: OK"}, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	got, ok, err := c.Get(ctx, "k1")
	if err != nil || !ok || got != want {
		t.Fatalf("Get k1 = %+v, %v, %v; want %+v", got, ok, err, want)
	}
	if got, ok, _ := c.Get(ctx, "k2"); !ok || got.Infected || got.Raw != "stream: OK" {
		t.Fatalf("Get k2 = %+v, %v", got, ok)
	}
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { raw.Close() })
	for key, want := range map[string]time.Duration{"k1": time.Hour, "k2": 2 * time.Second} {
		ttl, err := raw.TTL(ctx, DefaultRedisCachePrefix+key).Result()
		if err != nil || ttl <= want-5*time.Second || ttl > want {
			t.Errorf("TTL of %s%s = %v, %v; want about %v", DefaultRedisCachePrefix, key, ttl, err, want)
		}
	}
}

// With Redis down every call is an error, and the check treats it as a
// miss: the message is scanned, and the cache error counted.
func TestRedisCacheDown(t *testing.T) {
	srv := redistest.Start(t)
	cache := NewRedisCache(RedisCacheOptions{Addr: srv.Addr, Timeout: time.Second})
	t.Cleanup(func() { cache.Close() })
	f := newFakeTCP(t, verdictByContent)
	c := &Check{Client: newClient(t, Config{Address: f.address(), Timeout: 5 * time.Second}), Hostname: "mx.test",
		Cache: cache, CacheTTL: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if r := c.CheckBody(ctx, bodyOf(t, "Subject: same\r\n\r\nVIRUS\r\n")); r.Reason != ReasonVirus {
			t.Fatalf("round %d: %+v", i, r)
		}
	}
	if got := f.accepted.Load(); got != 1 {
		t.Fatalf("clamd scanned %d times with Redis up, want 1", got)
	}
	srv.Kill()
	if _, _, err := cache.Get(ctx, "k"); err == nil {
		t.Error("Get with Redis down: no error")
	}
	if err := cache.Put(ctx, "k", Result{}, time.Hour); err == nil {
		t.Error("Put with Redis down: no error")
	}
	errs := testutil.ToFloat64(metricCache.WithLabelValues("error"))
	r := c.CheckBody(ctx, bodyOf(t, "Subject: same\r\n\r\nVIRUS\r\n"))
	if r.Reason != ReasonVirus || r.Err != nil || r.Action != filter.Reject {
		t.Errorf("with the cache down: %+v, want the virus found by a scan", r)
	}
	if got := f.accepted.Load(); got != 2 {
		t.Errorf("clamd scanned %d times, want 2 (the cache down is a miss)", got)
	}
	if d := testutil.ToFloat64(metricCache.WithLabelValues("error")) - errs; d != 2 {
		t.Errorf("cache errors counted %v, want 2 (the get and the put)", d)
	}
}
