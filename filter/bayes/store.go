package bayes

import (
	"context"
	"sync"
)

// Store keeps the learnt counts: per feature, how many ham and spam
// messages held it, and how many ham and spam messages were learnt. Every
// method is safe for concurrent use.
type Store interface {
	// Lookup returns the learnt message counts and the counts of each
	// feature, in the order of feats.
	Lookup(ctx context.Context, feats []uint64) (nham, nspam int64, counts []Counts, err error)
	// Learned returns the learnt message counts.
	Learned(ctx context.Context) (nham, nspam int64, err error)
	// Learn adds delta (1 to learn, -1 to unlearn) to the count of each
	// feature of one message of the class, and to the class's message
	// count, as one change.
	Learn(ctx context.Context, feats []uint64, spam bool, delta int64) error
	Close() error
}

// MemStore is a Store in memory, for the evaluation and tests.
type MemStore struct {
	mu          sync.RWMutex
	nham, nspam int64
	counts      map[uint64]Counts
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{counts: map[uint64]Counts{}} }

// Lookup implements Store.
func (m *MemStore) Lookup(ctx context.Context, feats []uint64) (int64, int64, []Counts, error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Counts, len(feats))
	for i, f := range feats {
		out[i] = m.counts[f]
	}
	return m.nham, m.nspam, out, nil
}

// Learned implements Store.
func (m *MemStore) Learned(ctx context.Context) (int64, int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.nham, m.nspam, nil
}

// Learn implements Store.
func (m *MemStore) Learn(ctx context.Context, feats []uint64, spam bool, delta int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range feats {
		c := m.counts[f]
		if spam {
			c.Spam += delta
		} else {
			c.Ham += delta
		}
		if c.Ham <= 0 && c.Spam <= 0 {
			delete(m.counts, f)
		} else {
			m.counts[f] = c
		}
	}
	if spam {
		m.nspam += delta
	} else {
		m.nham += delta
	}
	return nil
}

// Close implements Store.
func (m *MemStore) Close() error { return nil }
