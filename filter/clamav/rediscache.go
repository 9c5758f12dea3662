package clamav

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisCachePrefix starts every key of a RedisCache: the verdict of
// content whose SHA-256 is HEX is at "mxgate:clamav:HEX".
const DefaultRedisCachePrefix = "mxgate:clamav:"

// RedisCacheOptions configure NewRedisCache.
type RedisCacheOptions struct {
	Addr     string // host:port
	Username string
	Password string
	DB       int
	Prefix   string // DefaultRedisCachePrefix when empty
	// Timeout bounds dialing and each read and write; 1 s when zero: a
	// slow cache must not hold up the scan it would save.
	Timeout time.Duration
}

// RedisCache is a VerdictCache in Redis, shared by every node of a cluster:
// a message scanned on one node is a hit on the others. Each verdict is one
// key set with SET ... EX, so Redis drops it when its TTL ends. Errors are
// returned (the check then scans, and counts the error).
type RedisCache struct {
	c      *redis.Client
	prefix string
}

// NewRedisCache returns a cache on the Redis server at o.Addr. It does not
// connect until used: a server down is an error of each call.
func NewRedisCache(o RedisCacheOptions) *RedisCache {
	if o.Prefix == "" {
		o.Prefix = DefaultRedisCachePrefix
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	c := redis.NewClient(&redis.Options{
		Addr: o.Addr, Username: o.Username, Password: o.Password, DB: o.DB,
		DialTimeout: o.Timeout, ReadTimeout: o.Timeout, WriteTimeout: o.Timeout,
		MaxRetries: 1, DialerRetries: 1,
	})
	return &RedisCache{c: c, prefix: o.Prefix}
}

// cachedVerdict is a Result as stored (the same fields, short JSON names).
type cachedVerdict struct {
	Infected bool   `json:"i"`
	Virus    string `json:"v,omitempty"`
	Raw      string `json:"r,omitempty"`
}

// Get returns the verdict kept for key, if any.
func (r *RedisCache) Get(ctx context.Context, key string) (Result, bool, error) {
	b, err := r.c.Get(ctx, r.prefix+key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return Result{}, false, nil
	case err != nil:
		return Result{}, false, fmt.Errorf("clamav cache redis get: %w", err)
	}
	var v cachedVerdict
	if err := json.Unmarshal(b, &v); err != nil {
		return Result{}, false, fmt.Errorf("clamav cache redis: bad entry %s: %w", r.prefix+key, err)
	}
	return Result(v), true, nil
}

// Put keeps a verdict for ttl (at least a second: Redis' EX is in seconds).
func (r *RedisCache) Put(ctx context.Context, key string, res Result, ttl time.Duration) error {
	b, err := json.Marshal(cachedVerdict(res))
	if err != nil {
		return fmt.Errorf("clamav cache: encode: %w", err)
	}
	ttl = max(ttl.Round(time.Second), time.Second)
	if err := r.c.Set(ctx, r.prefix+key, b, ttl).Err(); err != nil {
		return fmt.Errorf("clamav cache redis set: %w", err)
	}
	return nil
}

// Close closes the connections to Redis.
func (r *RedisCache) Close() error {
	if err := r.c.Close(); err != nil {
		return fmt.Errorf("clamav cache redis close: %w", err)
	}
	return nil
}
