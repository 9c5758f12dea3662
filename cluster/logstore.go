package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// logStore is Raft's log and stable store in one bbolt file (raft.db).
// raft-boltdb/v2 would do the same job but does not build against the
// go-metrics version this module uses (it imports go-metrics/compat, which
// v0.7 removed), and the whole store is a few dozen lines on bbolt.
//
// Unlike the FSM file this one is the source of truth, so bbolt fsyncs
// every commit (the default).
type logStore struct {
	db *bolt.DB
}

var (
	_ raft.LogStore    = (*logStore)(nil)
	_ raft.StableStore = (*logStore)(nil)

	bucketRaftLogs   = []byte("logs")
	bucketRaftStable = []byte("stable")

	// errKeyNotFound is what Raft expects from a StableStore for a key it
	// never set: it compares the error text with "not found".
	errKeyNotFound = errors.New("not found")
)

func openLogStore(path string) (*logStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("cluster: opening %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRaftLogs, bucketRaftStable} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("cluster: preparing %s: %w", path, err)
	}
	return &logStore{db: db}, nil
}

func (s *logStore) Close() error { return s.db.Close() }

func indexKey(i uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, i)
}

func (s *logStore) edgeIndex(last bool) (uint64, error) {
	var idx uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRaftLogs).Cursor()
		var k []byte
		if last {
			k, _ = c.Last()
		} else {
			k, _ = c.First()
		}
		if k != nil {
			idx = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return idx, err
}

// FirstIndex implements raft.LogStore.
func (s *logStore) FirstIndex() (uint64, error) { return s.edgeIndex(false) }

// LastIndex implements raft.LogStore.
func (s *logStore) LastIndex() (uint64, error) { return s.edgeIndex(true) }

// GetLog implements raft.LogStore.
func (s *logStore) GetLog(index uint64, l *raft.Log) error {
	return s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRaftLogs).Get(indexKey(index))
		if v == nil {
			return raft.ErrLogNotFound
		}
		return decodeLog(index, v, l)
	})
}

// StoreLog implements raft.LogStore.
func (s *logStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs implements raft.LogStore.
func (s *logStore) StoreLogs(logs []*raft.Log) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRaftLogs)
		for _, l := range logs {
			if err := b.Put(indexKey(l.Index), encodeLog(l)); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteRange implements raft.LogStore; the range is inclusive.
func (s *logStore) DeleteRange(lo, hi uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRaftLogs)
		// Collect first: deleting while a bbolt cursor walks can skip keys.
		var keys [][]byte
		c := b.Cursor()
		for k, _ := c.Seek(indexKey(lo)); k != nil && binary.BigEndian.Uint64(k) <= hi; k, _ = c.Next() {
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// Log entry encoding: term u64 | type u8 | appendedAt int64 Unix ns (0 for
// the zero time) | data length u32 | data | extensions. The index is the key.
const logHeaderSize = 8 + 1 + 8 + 4

func encodeLog(l *raft.Log) []byte {
	b := make([]byte, 0, logHeaderSize+len(l.Data)+len(l.Extensions))
	b = binary.BigEndian.AppendUint64(b, l.Term)
	b = append(b, byte(l.Type))
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(at))
	b = binary.BigEndian.AppendUint32(b, uint32(len(l.Data)))
	b = append(b, l.Data...)
	return append(b, l.Extensions...)
}

// decodeLog copies out of v, which bbolt owns only for the transaction.
func decodeLog(index uint64, v []byte, l *raft.Log) error {
	if len(v) < logHeaderSize {
		return fmt.Errorf("cluster: raft log %d: %d bytes, header needs %d", index, len(v), logHeaderSize)
	}
	n := int(binary.BigEndian.Uint32(v[17:21]))
	if len(v) < logHeaderSize+n {
		return fmt.Errorf("cluster: raft log %d: truncated data", index)
	}
	*l = raft.Log{
		Index: index,
		Term:  binary.BigEndian.Uint64(v[0:8]),
		Type:  raft.LogType(v[8]),
	}
	if at := int64(binary.BigEndian.Uint64(v[9:17])); at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	if n > 0 {
		l.Data = append([]byte(nil), v[logHeaderSize:logHeaderSize+n]...)
	}
	if ext := v[logHeaderSize+n:]; len(ext) > 0 {
		l.Extensions = append([]byte(nil), ext...)
	}
	return nil
}

// Set implements raft.StableStore.
func (s *logStore) Set(key, val []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRaftStable).Put(key, val)
	})
}

// Get implements raft.StableStore.
func (s *logStore) Get(key []byte) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRaftStable).Get(key)
		if v == nil {
			return errKeyNotFound
		}
		out = append([]byte{}, v...)
		return nil
	})
	return out, err
}

// SetUint64 implements raft.StableStore.
func (s *logStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 implements raft.StableStore.
func (s *logStore) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("cluster: stable key %q: %d bytes, want 8", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
