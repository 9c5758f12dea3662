package cluster

// Chunking is implemented here rather than with hashicorp/go-raftchunking
// (it did resolve: its latest is a 2019 pseudo-version, bringing
// mitchellh/copystructure and hashicorp/errwrap): it carries chunk metadata
// in raft.Log.Extensions, outside our typed-command table, and keeps
// partial chunks in memory, so they are missing from a snapshot taken
// between two chunks of one command. Here a chunk is an ordinary typed
// command (CmdChunk) and its parts wait in bbolt, inside the snapshot.

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// CmdChunk carries one part of a command too large for one log entry; its
// type byte is part of the log format.
const CmdChunk CommandType = 4

// The chunks' buckets; part of the snapshot format.
var (
	bucketChunks    = []byte("chunk_parts") // id|index -> data
	bucketChunkSets = []byte("chunk_sets")  // id -> total, received, expiresAt
	bucketChunkDone = []byte("chunk_done")  // id -> expiresAt
)

// Chunking is registered like a domain (its parts are state, in
// snapshots, and expire) but holds no state of its own: a completed set
// is applied as the command it carries, whichever domain that belongs to.
func init() {
	registerDomain(domain{
		name:     "chunks",
		buckets:  [][]byte{bucketChunks, bucketChunkSets, bucketChunkDone},
		commands: []command{{CmdChunk, "chunk", applyChunk}},
		expire: func(tx *bolt.Tx, now time.Time) map[string]int {
			return map[string]int{"chunks": expireChunks(tx, now)}
		},
	})
}

// MaxEntrySize is the largest command sent as one log entry; larger ones go
// through SplitCommand.
const MaxEntrySize = 512 << 10

// MaxChunks bounds the parts of one chunked command (MaxChunks *
// MaxEntrySize is 2 GiB, far above any message size limit).
const MaxChunks = 4096

// chunkHeaderSize is the CmdChunk header after the type byte: id, index,
// total, expiresAt.
const chunkHeaderSize = 16 + 4 + 4 + 8

// ChunkID names one chunked command; NewChunkID makes a random one.
type ChunkID [16]byte

// NewChunkID returns a random ChunkID.
func NewChunkID() ChunkID {
	var id ChunkID
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails (Go 1.24+)
	return id
}

// chunk is one decoded CmdChunk.
type chunk struct {
	id           ChunkID
	index, total uint32
	expiresAt    int64 // Unix ns
	data         []byte
}

// EncodeChunk returns one CmdChunk entry. Most callers want SplitCommand.
func EncodeChunk(id ChunkID, index, total uint32, expiresAt time.Time, data []byte) []byte {
	b := make([]byte, 1+chunkHeaderSize, 1+chunkHeaderSize+len(data))
	b[0] = byte(CmdChunk)
	copy(b[1:17], id[:])
	binary.BigEndian.PutUint32(b[17:21], index)
	binary.BigEndian.PutUint32(b[21:25], total)
	binary.BigEndian.PutUint64(b[25:33], uint64(expiresAt.UnixNano()))
	return append(b, data...)
}

// SplitCommand returns cmd as log entries of at most MaxEntrySize bytes:
// cmd itself when it fits, else CmdChunk entries to be applied in order.
// expiresAt is when a set that never completed (its proposer died half
// way) may be dropped by CmdExpire, and until when a completed set's id is
// remembered so that a duplicated part does not start it again; it should
// be comfortably later than the time the proposal can take (e.g. now + 1h).
func SplitCommand(cmd []byte, id ChunkID, expiresAt time.Time) ([][]byte, error) {
	if len(cmd) <= MaxEntrySize {
		return [][]byte{cmd}, nil
	}
	const size = MaxEntrySize - 1 - chunkHeaderSize
	total := (len(cmd) + size - 1) / size
	if total > MaxChunks {
		return nil, fmt.Errorf("cluster: command of %d bytes needs more than %d chunks", len(cmd), MaxChunks)
	}
	if expiresAt.IsZero() {
		return nil, fmt.Errorf("cluster: chunked command without expiry")
	}
	out := make([][]byte, 0, total)
	for i := 0; i < total; i++ {
		part := cmd[i*size : min((i+1)*size, len(cmd))]
		out = append(out, EncodeChunk(id, uint32(i), uint32(total), expiresAt, part))
	}
	return out, nil
}

func decodeChunk(payload []byte) chunk {
	if len(payload) < chunkHeaderSize {
		panic(fmt.Sprintf("cluster: undecodable chunk command: %d bytes, header needs %d", len(payload), chunkHeaderSize))
	}
	var c chunk
	copy(c.id[:], payload[0:16])
	c.index = binary.BigEndian.Uint32(payload[16:20])
	c.total = binary.BigEndian.Uint32(payload[20:24])
	c.expiresAt = int64(binary.BigEndian.Uint64(payload[24:32]))
	c.data = payload[32:]
	return c
}

// chunkSet is the stored progress of one chunked command.
type chunkSet struct {
	total, received uint32
	expiresAt       int64
}

func (s chunkSet) encode() []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint32(b[0:4], s.total)
	binary.BigEndian.PutUint32(b[4:8], s.received)
	binary.BigEndian.PutUint64(b[8:16], uint64(s.expiresAt))
	return b
}

func decodeChunkSet(b []byte) (chunkSet, bool) {
	if len(b) != 16 {
		return chunkSet{}, false
	}
	return chunkSet{
		total:     binary.BigEndian.Uint32(b[0:4]),
		received:  binary.BigEndian.Uint32(b[4:8]),
		expiresAt: int64(binary.BigEndian.Uint64(b[8:16])),
	}, true
}

func partKey(id ChunkID, index uint32) []byte {
	k := make([]byte, 20)
	copy(k, id[:])
	binary.BigEndian.PutUint32(k[16:], index)
	return k
}

func mustPut(b *bolt.Bucket, k, v []byte) {
	if err := b.Put(k, v); err != nil {
		panic(fmt.Sprintf("cluster: storing %x: %v", k, err))
	}
}

func mustDelete(b *bolt.Bucket, k []byte) {
	if err := b.Delete(k); err != nil {
		panic(fmt.Sprintf("cluster: deleting %x: %v", k, err))
	}
}

// applyChunk stores one part; the part that completes its set applies the
// joined inner command and returns that command's response. Other parts
// answer nil.
func applyChunk(f *FSM, tx *bolt.Tx, payload []byte) any {
	c := decodeChunk(payload)
	switch {
	case c.total == 0 || c.total > MaxChunks:
		return invalid("chunk total %d out of range 1-%d", c.total, MaxChunks)
	case c.index >= c.total:
		return invalid("chunk index %d of %d", c.index, c.total)
	case c.expiresAt == 0:
		return invalid("chunk without expiry")
	}
	done := tx.Bucket(bucketChunkDone)
	if done.Get(c.id[:]) != nil {
		return nil // a duplicate part of a command already applied
	}
	sets, parts := tx.Bucket(bucketChunkSets), tx.Bucket(bucketChunks)
	set := chunkSet{total: c.total, expiresAt: c.expiresAt}
	if v := sets.Get(c.id[:]); v != nil {
		s, ok := decodeChunkSet(v)
		if !ok {
			panic(fmt.Sprintf("cluster: corrupt chunk set %x", c.id))
		}
		if s.total != c.total {
			return invalid("chunk %x: total %d, set started with %d", c.id, c.total, s.total)
		}
		set = s
	}
	pk := partKey(c.id, c.index)
	if parts.Get(pk) != nil {
		return nil // duplicate part: the first copy stands
	}
	mustPut(parts, pk, c.data)
	set.received++
	if set.received < set.total {
		mustPut(sets, c.id[:], set.encode())
		return nil
	}

	// Last part: join in index order, which is key order (the big-endian
	// index follows the id).
	var joined bytes.Buffer
	var keys [][]byte
	cur := parts.Cursor()
	for k, v := cur.Seek(c.id[:]); k != nil && bytes.HasPrefix(k, c.id[:]); k, v = cur.Next() {
		if idx := binary.BigEndian.Uint32(k[16:]); idx != uint32(len(keys)) {
			panic(fmt.Sprintf("cluster: chunk set %x: part %d missing with all %d counted", c.id, len(keys), set.total))
		}
		joined.Write(v)
		keys = append(keys, append([]byte(nil), k...))
	}
	if len(keys) != int(set.total) {
		panic(fmt.Sprintf("cluster: chunk set %x: joined %d of %d parts", c.id, len(keys), set.total))
	}
	for _, k := range keys {
		mustDelete(parts, k)
	}
	mustDelete(sets, c.id[:])
	mustPut(done, c.id[:], binary.BigEndian.AppendUint64(nil, uint64(c.expiresAt)))

	inner := joined.Bytes()
	if len(inner) > 0 && CommandType(inner[0])&^IgnorableFlag == CmdChunk {
		return invalid("chunk %x holds a chunk command", c.id)
	}
	return f.apply(tx, inner)
}

// expireChunks drops partial sets and completed-set markers whose expiry is
// not after now.
func expireChunks(tx *bolt.Tx, now time.Time) int {
	nowNS := now.UnixNano()
	sets, parts, done := tx.Bucket(bucketChunkSets), tx.Bucket(bucketChunks), tx.Bucket(bucketChunkDone)
	dead := func(v []byte, off int) bool {
		return len(v) < off+8 || int64(binary.BigEndian.Uint64(v[off:off+8])) <= nowNS
	}
	var deadSets [][]byte
	c := sets.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if dead(v, 8) {
			deadSets = append(deadSets, append([]byte(nil), k...))
		}
	}
	for _, id := range deadSets {
		var keys [][]byte
		pc := parts.Cursor()
		for k, _ := pc.Seek(id); k != nil && bytes.HasPrefix(k, id); k, _ = pc.Next() {
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			mustDelete(parts, k)
		}
		mustDelete(sets, id)
	}
	n := len(deadSets)
	n += deleteWhere(done, func(v []byte) bool { return dead(v, 0) })
	return n
}
