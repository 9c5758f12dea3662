package cluster

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// Snapshot opens a read transaction, which fixes the state to persist;
// Apply may go on while Persist streams it.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	tx, err := f.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("cluster: snapshot: %w", err)
	}
	return &fsmSnapshot{tx: tx}, nil
}

type fsmSnapshot struct {
	tx   *bolt.Tx
	once sync.Once
}

// Persist writes a consistent copy of the bbolt file to sink.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	start := time.Now()
	defer func() { metricSnapshotDuration.Observe(time.Since(start).Seconds()) }()
	_, err := s.tx.WriteTo(sink)
	s.release()
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("cluster: snapshot persist: %w", err)
	}
	return sink.Close()
}

// Release ends the read transaction; Raft calls it whether or not Persist
// ran.
func (s *fsmSnapshot) Release() { s.release() }

func (s *fsmSnapshot) release() {
	s.once.Do(func() { _ = s.tx.Rollback() })
}

// Restore replaces the state with a snapshot: it writes a new bbolt file,
// opens and checks it, and only then swaps it in for the live one.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp, err := os.CreateTemp(f.dir, "fsm-restore-*.db")
	if err != nil {
		return fmt.Errorf("cluster: restore: %w", err)
	}
	tmpPath := tmp.Name()
	_, err = io.Copy(tmp, rc)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmpPath)
		return fmt.Errorf("cluster: restore: writing %s: %w", tmpPath, err)
	}
	// Every registered domain's section (its buckets) is in the new file
	// once it is open: a snapshot from before a domain existed gets the
	// domain's buckets empty.
	db, err := openDB(tmpPath, f.reg)
	if err != nil {
		os.Remove(tmpPath)
		return fmt.Errorf("cluster: restore: %w", err)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	// Close waits for open read transactions (a snapshot being persisted)
	// to end.
	if err := f.db.Close(); err != nil {
		db.Close()
		os.Remove(tmpPath)
		return fmt.Errorf("cluster: restore: closing old state: %w", err)
	}
	livePath := filepath.Join(f.dir, fsmFile)
	// The new handle stays valid across the rename (same inode); renaming
	// replaces, and so removes, the old file.
	if err := os.Rename(tmpPath, livePath); err != nil {
		// Rare (same directory), and not a reason to fail: the new state
		// is complete and open. Serve it under its temporary name (NewFSM
		// clears such files at the next start) and drop the old file.
		_ = os.Remove(livePath)
	}
	f.db = db
	return nil
}
