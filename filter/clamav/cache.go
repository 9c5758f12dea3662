package clamav

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"time"
)

// VerdictCache keeps clamd's verdicts by the SHA-256 of what was scanned, so
// that the same content sent in many transactions is scanned once. Only
// verdicts are kept, never errors.
type VerdictCache interface {
	Get(ctx context.Context, key string) (Result, bool, error)
	Put(ctx context.Context, key string, r Result, ttl time.Duration) error
}

// ContentKey is the cache key of the content r yields.
func ContentKey(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", fmt.Errorf("hash the message: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// MemoryCache is a VerdictCache in the node's memory, bounded in entries:
// when full, expired entries go first, then the oldest.
type MemoryCache struct {
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[string]memEntry
	order   []string // insertion order, for eviction
}

type memEntry struct {
	r       Result
	expires time.Time
}

// NewMemoryCache holds at most max verdicts (0: 100,000).
func NewMemoryCache(max int, now func() time.Time) *MemoryCache {
	if max <= 0 {
		max = 100_000
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryCache{max: max, now: now, entries: map[string]memEntry{}}
}

// Get returns a verdict not yet expired.
func (c *MemoryCache) Get(_ context.Context, key string) (Result, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !c.now().Before(e.expires) {
		return Result{}, false, nil
	}
	return e.r, true, nil
}

// Put keeps a verdict for ttl.
func (c *MemoryCache) Put(_ context.Context, key string, r Result, ttl time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok {
		for len(c.entries) >= c.max && len(c.order) > 0 {
			old := c.order[0]
			c.order = c.order[1:]
			delete(c.entries, old)
		}
		c.order = append(c.order, key)
	}
	c.entries[key] = memEntry{r: r, expires: c.now().Add(ttl)}
	if len(c.order) > 2*c.max {
		c.compact()
	}
	return nil
}

// compact drops keys of deleted entries from the eviction order.
func (c *MemoryCache) compact() {
	keep := c.order[:0]
	for _, k := range c.order {
		if _, ok := c.entries[k]; ok {
			keep = append(keep, k)
		}
	}
	c.order = keep
}

// Len is the number of verdicts held, expired ones included.
func (c *MemoryCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
