package greylist

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/mxgate/mxgate/internal/safefile"
)

// MemoryStore is the single-node Store: maps in memory, persisted as a JSON
// snapshot on Flush and Close and loaded on open. Between flushes a crash
// loses recent greylist state, which costs at most one more 451 per triplet.
type MemoryStore struct {
	path   string
	logger *slog.Logger

	mu       sync.Mutex
	triplets map[string]Triplet
	networks map[string]Network
	gen      uint64 // bumped on every change
	now      func() time.Time

	flushMu    sync.Mutex // serialises snapshot writes
	flushedGen uint64
}

const snapshotVersion = 1

type snapshot struct {
	Version  int                `json:"version"`
	Triplets map[string]Triplet `json:"triplets"`
	Networks map[string]Network `json:"networks"`
}

// OpenMemoryStore loads the snapshot at path (a missing file is an empty
// store; an unreadable or corrupt one is an error naming the path). An empty
// path keeps the store in memory only. logger nil means slog.Default().
func OpenMemoryStore(path string, logger *slog.Logger) (*MemoryStore, error) {
	if logger == nil {
		logger = slog.Default()
	}
	m := &MemoryStore{
		path:     path,
		logger:   logger,
		triplets: map[string]Triplet{},
		networks: map[string]Network{},
		now:      time.Now,
	}
	if path == "" {
		return m, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("greylist: read store %s: %w", path, err)
	}
	var snap snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return nil, fmt.Errorf("greylist: corrupt store %s: %w", path, err)
	}
	if snap.Version != snapshotVersion {
		return nil, fmt.Errorf("greylist: store %s: unsupported version %d", path, snap.Version)
	}
	if snap.Triplets != nil {
		m.triplets = snap.Triplets
	}
	if snap.Networks != nil {
		m.networks = snap.Networks
	}
	return m, nil
}

// SetClock sets the clock Run uses for expiry (default time.Now).
func (m *MemoryStore) SetClock(now func() time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = now
}

// GetTriplet implements Store.
func (m *MemoryStore) GetTriplet(_ context.Context, key string) (Triplet, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.triplets[key]
	return t, ok, nil
}

// PutTriplet implements Store.
func (m *MemoryStore) PutTriplet(_ context.Context, key string, t Triplet) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.triplets[key] = t
	m.gen++
	return nil
}

// GetNetwork implements Store.
func (m *MemoryStore) GetNetwork(_ context.Context, network string) (Network, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.networks[network]
	return n, ok, nil
}

// PutNetwork implements Store.
func (m *MemoryStore) PutNetwork(_ context.Context, network string, n Network) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.networks[network] = n
	m.gen++
	return nil
}

// Len returns the number of triplets and networks held.
func (m *MemoryStore) Len() (triplets, networks int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.triplets), len(m.networks)
}

// Expire removes the triplets and networks Expired at now and returns how
// many it removed.
func (m *MemoryStore) Expire(now time.Time) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	removed := 0
	for k, t := range m.triplets {
		if t.Expired(now) {
			delete(m.triplets, k)
			removed++
		}
	}
	for k, n := range m.networks {
		if n.Expired(now) {
			delete(m.networks, k)
			removed++
		}
	}
	if removed > 0 {
		m.gen++
	}
	return removed
}

// Flush writes the snapshot atomically (temporary file, fsync, rename,
// directory fsync) if anything changed since the last flush.
func (m *MemoryStore) Flush() error {
	if m.path == "" {
		return nil
	}
	m.flushMu.Lock()
	defer m.flushMu.Unlock()

	m.mu.Lock()
	gen := m.gen
	if gen == m.flushedGen {
		m.mu.Unlock()
		return nil
	}
	data, err := json.Marshal(snapshot{Version: snapshotVersion, Triplets: m.triplets, Networks: m.networks})
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("greylist: encode store: %w", err)
	}
	if err := safefile.Write(m.path, data, 0o600); err != nil {
		return fmt.Errorf("greylist: write store %s: %w", m.path, err)
	}
	m.flushedGen = gen
	return nil
}

// Close flushes. The store stays usable in memory afterwards.
func (m *MemoryStore) Close() error {
	return m.Flush()
}

// Run expires and flushes every interval until ctx is done, then flushes a
// last time. Errors are logged, not fatal: the next round retries.
func (m *MemoryStore) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Minute
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := m.Flush(); err != nil {
				m.logger.Error("greylist store final flush failed", "err", err)
			}
			return
		case <-tick.C:
			m.mu.Lock()
			now := m.now()
			m.mu.Unlock()
			if n := m.Expire(now); n > 0 {
				m.logger.Debug("greylist entries expired", "count", n)
			}
			if err := m.Flush(); err != nil {
				m.logger.Error("greylist store flush failed", "err", err)
			}
		}
	}
}
