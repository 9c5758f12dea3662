package bayes

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// The bbolt layout (data_dir/bayes.db):
//
//	bucket "tokens": key = feature, 8 bytes big-endian;
//	                 value = ham count, spam count as two signed varints
//	bucket "meta":   "ham", "spam" = learnt message counts, 8 bytes big-endian;
//	                 "version" = "1"
var (
	boltTokens = []byte("tokens")
	boltMeta   = []byte("meta")
	keyHam     = []byte("ham")
	keySpam    = []byte("spam")
)

// BoltFile is the store's file name in the node's data directory.
const BoltFile = "bayes.db"

// BoltStore is a Store in a bbolt file, for a node without Redis. The file
// is locked by the process that opened it: `mxgate bayes train` on a
// running node's file waits for the lock, then fails.
type BoltStore struct {
	db *bolt.DB
}

// OpenBolt opens or creates the store at path.
func OpenBolt(path string) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open bayes store %s: locked by another process (a running mxgate?)", path)
		}
		return nil, fmt.Errorf("open bayes store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(boltTokens); err != nil {
			return err
		}
		m, err := tx.CreateBucketIfNotExists(boltMeta)
		if err != nil {
			return err
		}
		if m.Get([]byte("version")) == nil {
			return m.Put([]byte("version"), []byte("1"))
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init bayes store %s: %w", path, err)
	}
	return &BoltStore{db: db}, nil
}

func featKey(f uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], f)
	return k[:]
}

func decodeCounts(v []byte) Counts {
	h, n := binary.Varint(v)
	if n <= 0 {
		return Counts{}
	}
	s, m := binary.Varint(v[n:])
	if m <= 0 {
		return Counts{}
	}
	return Counts{Ham: h, Spam: s}
}

func metaCount(m *bolt.Bucket, k []byte) int64 {
	v := m.Get(k)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

// Lookup implements Store.
func (b *BoltStore) Lookup(ctx context.Context, feats []uint64) (nham, nspam int64, counts []Counts, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, nil, err
	}
	counts = make([]Counts, len(feats))
	err = b.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(boltMeta)
		nham, nspam = metaCount(m, keyHam), metaCount(m, keySpam)
		t := tx.Bucket(boltTokens)
		for i, f := range feats {
			if v := t.Get(featKey(f)); v != nil {
				counts[i] = decodeCounts(v)
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, nil, fmt.Errorf("bayes store lookup: %w", err)
	}
	return nham, nspam, counts, nil
}

// Learned implements Store.
func (b *BoltStore) Learned(ctx context.Context) (nham, nspam int64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	err = b.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(boltMeta)
		nham, nspam = metaCount(m, keyHam), metaCount(m, keySpam)
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("bayes store counts: %w", err)
	}
	return nham, nspam, nil
}

// Learn implements Store.
func (b *BoltStore) Learn(ctx context.Context, feats []uint64, spam bool, delta int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
		t := tx.Bucket(boltTokens)
		for _, f := range feats {
			k := featKey(f)
			c := decodeCounts(t.Get(k))
			if spam {
				c.Spam += delta
			} else {
				c.Ham += delta
			}
			if c.Ham <= 0 && c.Spam <= 0 {
				if err := t.Delete(k); err != nil {
					return err
				}
				continue
			}
			// A new slice each time: bbolt keeps keys and values
			// until the transaction ends.
			v := binary.AppendVarint(make([]byte, 0, 2*binary.MaxVarintLen64), c.Ham)
			v = binary.AppendVarint(v, c.Spam)
			if err := t.Put(k, v); err != nil {
				return err
			}
		}
		m := tx.Bucket(boltMeta)
		k := keyHam
		if spam {
			k = keySpam
		}
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(max(metaCount(m, k)+delta, 0)))
		return m.Put(k, n[:])
	})
	if err != nil {
		return fmt.Errorf("bayes store learn: %w", err)
	}
	return nil
}

// Close implements Store.
func (b *BoltStore) Close() error { return b.db.Close() }
