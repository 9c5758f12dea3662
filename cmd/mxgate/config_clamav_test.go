package main

import (
	"log/slog"
	"testing"
	"time"

	"github.com/mxgate/mxgate/filter/clamav"
)

// TestClamAVCacheStore: the verdict cache is in Redis when redis.address is
// set, else in memory, and off with cache_ttl 0s.
func TestClamAVCacheStore(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	cfg := defaultConfig()
	if ch := cfg.clamavCheck(nil, nil, logger); ch.CacheTTL != time.Hour {
		t.Errorf("cache_ttl %v, want 1h", ch.CacheTTL)
	} else if _, ok := ch.Cache.(*clamav.MemoryCache); !ok {
		t.Errorf("without redis.address: cache %T, want the memory cache", ch.Cache)
	}
	cfg.Redis.Address = "127.0.0.1:6379"
	ch := cfg.clamavCheck(nil, nil, logger)
	rc, ok := ch.Cache.(*clamav.RedisCache)
	if !ok {
		t.Fatalf("with redis.address: cache %T, want the Redis cache", ch.Cache)
	}
	rc.Close()
	cfg.ClamAV.CacheTTL = 0
	if ch := cfg.clamavCheck(nil, nil, logger); ch.Cache != nil {
		t.Errorf("cache_ttl 0s: cache %T, want none", ch.Cache)
	}
}
