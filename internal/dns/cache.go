package dns

import (
	"container/list"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// answer is the outcome of one lookup of a name and type, after CNAMEs were
// followed: the records of the type (owned by the end of the chain), or a
// negative kind (NXDomain, NoData).
type answer struct {
	rrs       []mdns.RR // never modified once built; shared by cache hits
	kind      Kind      // 0, NXDomain or NoData
	authentic bool
}

type cacheKey struct {
	name  string // lower case, absolute
	qtype uint16
}

type cacheEntry struct {
	key     cacheKey
	ans     answer
	expires time.Time
}

// cache is a size-capped LRU of answers, each kept until its expiry.
type cache struct {
	mu  sync.Mutex
	max int
	ll  *list.List // front: most recently used; values are *cacheEntry
	m   map[cacheKey]*list.Element
}

func newCache(size int) *cache {
	return &cache{max: size, ll: list.New(), m: make(map[cacheKey]*list.Element)}
}

// get returns the answer for key and its expiry, if it has not expired at
// now.
func (c *cache) get(key cacheKey, now time.Time) (answer, time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[key]
	if !ok {
		return answer{}, time.Time{}, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.m, key)
		return answer{}, time.Time{}, false
	}
	c.ll.MoveToFront(el)
	return e.ans, e.expires, true
}

// put stores ans until expires, evicting the least recently used entry when
// the cache is full.
func (c *cache) put(key cacheKey, ans answer, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		e := el.Value.(*cacheEntry)
		e.ans, e.expires = ans, expires
		c.ll.MoveToFront(el)
		return
	}
	for c.ll.Len() >= c.max {
		oldest := c.ll.Back()
		c.ll.Remove(oldest)
		delete(c.m, oldest.Value.(*cacheEntry).key)
	}
	c.m[key] = c.ll.PushFront(&cacheEntry{key: key, ans: ans, expires: expires})
}

// len returns the number of entries, expired ones included.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
