package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

const fsmFile = "fsm.db"

// ErrInvalidCommand wraps the semantic errors Apply returns as responses.
var ErrInvalidCommand = errors.New("cluster: invalid command")

// FSM is mxgate's Raft state machine: the registered domains' state (see
// domain.go) in one bbolt file. Apply, Snapshot and Restore are called by
// Raft; the domains' reads (GetTriplet, GetNetwork) may be called
// concurrently from any goroutine.
type FSM struct {
	dir string
	reg *registry

	// mu guards db: readers and Apply hold it shared, Restore exclusively
	// while it swaps the file.
	mu sync.RWMutex
	db *bolt.DB

	ignored atomic.Uint64
}

var _ raft.FSM = (*FSM)(nil)

func boltOptions() *bolt.Options {
	return &bolt.Options{
		Timeout: time.Second, // another process holding the file: fail, don't hang
		// The file is rebuilt from the Raft log and snapshots on every
		// start (see NewFSM): durability comes from Raft, so no fsync.
		NoSync:         true,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		// Growing the mmap waits for open read transactions, and a
		// snapshot keeps one open while it streams; a generous initial
		// mapping (address space only) makes that rare.
		InitialMmapSize: 256 << 20,
	}
}

// NewFSM returns an FSM keeping its state in dir/fsm.db. Any earlier file
// there is discarded: Raft restores the latest snapshot and replays the log
// after it, so the FSM must start empty.
func NewFSM(dir string) (*FSM, error) {
	return newFSM(dir, defaultRegistry)
}

// newFSM is NewFSM with the domains of reg.
func newFSM(dir string, reg *registry) (*FSM, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: fsm dir: %w", err)
	}
	// Leftovers of an interrupted Restore.
	if stale, err := filepath.Glob(filepath.Join(dir, "fsm-restore-*.db")); err == nil {
		for _, p := range stale {
			_ = os.Remove(p)
		}
	}
	path := filepath.Join(dir, fsmFile)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cluster: removing old fsm file: %w", err)
	}
	db, err := openDB(path, reg)
	if err != nil {
		return nil, err
	}
	return &FSM{dir: dir, reg: reg, db: db}, nil
}

// openDB opens a bbolt file and makes sure every bucket of every domain of
// reg exists (a snapshot from an older version lacks those of newer
// domains).
func openDB(path string, reg *registry) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, boltOptions())
	if err != nil {
		return nil, fmt.Errorf("cluster: opening %s: %w", path, err)
	}
	err = db.Update(reg.createBuckets)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("cluster: preparing %s: %w", path, err)
	}
	return db, nil
}

// Close closes the bbolt file.
func (f *FSM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.db.Close()
}

// Apply applies one committed log entry. See doc.go for what panics and
// what is returned.
func (f *FSM) Apply(l *raft.Log) any {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.applyLog(l)
}

var _ raft.BatchingFSM = (*FSM)(nil)

// ApplyBatch applies the entries Raft committed together in one bbolt
// transaction: under write load a transaction per entry is most of the
// cost of applying. A command that is rejected must change nothing, and a
// bbolt transaction cannot be rolled back in part, so when any command of
// the batch is rejected the whole transaction is discarded and the batch
// is applied again one entry per transaction. Rejections are rare (they
// mean a proposer sent an invalid command), so this costs nothing in
// practice.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	f.mu.RLock()
	defer f.mu.RUnlock()
	resps := make([]any, len(logs))
	rejected := errors.New("a command of the batch was rejected")
	err := f.db.Update(func(tx *bolt.Tx) error {
		for i, l := range logs {
			if l.Type != raft.LogCommand {
				continue
			}
			resps[i] = f.apply(tx, l.Data)
			if _, ok := resps[i].(error); ok {
				return rejected
			}
		}
		return nil
	})
	switch {
	case err == nil:
		return resps
	case errors.Is(err, rejected):
		for i, l := range logs {
			resps[i] = f.applyLog(l)
		}
		return resps
	default:
		panic(fmt.Sprintf("cluster: applying log indexes %d to %d: %v", logs[0].Index, logs[len(logs)-1].Index, err))
	}
}

// applyLog applies one entry in its own transaction; f.mu is held shared.
func (f *FSM) applyLog(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		// Raft hands only commands to the FSM; be explicit anyway.
		return nil
	}
	var resp any
	err := f.db.Update(func(tx *bolt.Tx) error {
		resp = f.apply(tx, l.Data)
		if err, ok := resp.(error); ok {
			return errRollback{err} // a rejected command changes nothing
		}
		return nil
	})
	var rb errRollback
	if errors.As(err, &rb) {
		return rb.err
	}
	if err != nil {
		// The entry was valid but this node could not store its effect:
		// carrying on would leave it diverged from the others.
		panic(fmt.Sprintf("cluster: applying log index %d: %v", l.Index, err))
	}
	return resp
}

type errRollback struct{ err error }

func (e errRollback) Error() string { return e.err.Error() }

// apply dispatches one encoded command; chunks call it again with the
// reassembled inner command.
func (f *FSM) apply(tx *bolt.Tx, data []byte) any {
	if len(data) == 0 {
		panic("cluster: empty command")
	}
	t := CommandType(data[0])
	if c := f.reg.commands[t&^IgnorableFlag]; c != nil {
		return c.apply(f, tx, data[1:])
	}
	if t&IgnorableFlag != 0 {
		f.ignored.Add(1)
		return nil
	}
	panic(fmt.Sprintf("cluster: unknown command type %d", uint8(t)))
}

// IgnoredCommands is how many commands of unknown ignorable types this node
// skipped (a sign that a newer version runs in the cluster).
func (f *FSM) IgnoredCommands() uint64 { return f.ignored.Load() }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidCommand, fmt.Sprintf(format, args...))
}

func checkKey(kind, k string) error {
	if k == "" {
		return invalid("empty %s", kind)
	}
	if len(k) > bolt.MaxKeySize {
		return invalid("%s longer than %d bytes", kind, bolt.MaxKeySize)
	}
	return nil
}

// putJSON stores v; a storage error panics through Apply's commit path.
func putJSON(b *bolt.Bucket, key string, v any) any {
	val, err := json.Marshal(v)
	if err != nil {
		return invalid("encoding %q: %v", key, err)
	}
	if err := b.Put([]byte(key), val); err != nil {
		panic(fmt.Sprintf("cluster: storing %q: %v", key, err))
	}
	return nil
}

// get decodes the JSON value stored under key in bucket into v, in a
// read-only transaction: the domains' reads.
func (f *FSM) get(bucket []byte, key string, v any) (bool, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var found bool
	err := f.db.View(func(tx *bolt.Tx) error {
		val := tx.Bucket(bucket).Get([]byte(key))
		if val == nil {
			return nil
		}
		found = true
		// Unmarshal copies: val is only valid inside the transaction.
		return json.Unmarshal(val, v)
	})
	if err != nil {
		return false, fmt.Errorf("cluster: reading %s %q: %w", bucket, key, err)
	}
	return found, nil
}

// Size is the size in bytes of the FSM's bbolt file, for the metrics.
func (f *FSM) Size() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var n int64
	_ = f.db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}
