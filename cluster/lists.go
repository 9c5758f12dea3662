package cluster

// The operators' allow and block lists, replicated: an entry added through
// any node applies on every node. Entries are written by lists.Store's
// cluster implementation, ListsStore.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mxgate/mxgate/lists"
)

// The lists' command types; part of the log format (see CommandType). They
// are sent with IgnorableFlag: a node of an older version, which has no
// lists, skips them during a rolling upgrade.
const (
	CmdListsPut    CommandType = 5
	CmdListsDelete CommandType = 6
)

// The lists' bucket; part of the snapshot format. Keys are an entry's Key
// (list, NUL, value); listsVersionKey holds a counter bumped by every change.
var bucketLists = []byte("lists")

var listsVersionKey = []byte("\x00version")

func init() {
	registerDomain(domain{
		name:    "lists",
		buckets: [][]byte{bucketLists},
		commands: []command{
			{CmdListsPut, "lists_put", applyListsPut},
			{CmdListsDelete, "lists_delete", applyListsDelete},
		},
	})
}

type listsDeleteCmd struct {
	List  lists.List `json:"l"`
	Value string     `json:"v"`
}

// EncodeListsPut returns the command adding or replacing e.
func EncodeListsPut(e lists.Entry) []byte {
	return encodeJSON(CmdListsPut|IgnorableFlag, e)
}

// EncodeListsDelete returns the command removing value from list l.
func EncodeListsDelete(l lists.List, value string) []byte {
	return encodeJSON(CmdListsDelete|IgnorableFlag, listsDeleteCmd{List: l, Value: value})
}

func applyListsPut(_ *FSM, tx *bolt.Tx, payload []byte) any {
	var e lists.Entry
	decodeJSON(CmdListsPut, payload, &e)
	checked, err := lists.NewEntry(e.List, e.Value, e.Comment, e.Added)
	if err != nil || checked.Value != e.Value || checked.Kind != e.Kind {
		return invalid("list entry %q: not normalised", e.Value)
	}
	if err := checkKey("list entry", e.Key()); err != nil {
		return err
	}
	b := tx.Bucket(bucketLists)
	if b.Get([]byte(e.Key())) == nil && countList(b, e.List) >= lists.MaxEntries {
		return invalid("the %s list is full (%d entries)", e.List, lists.MaxEntries)
	}
	if r := putJSON(b, e.Key(), e); r != nil {
		return r
	}
	bumpListsVersion(b)
	return nil
}

// applyListsDelete returns true when an entry was removed.
func applyListsDelete(_ *FSM, tx *bolt.Tx, payload []byte) any {
	var c listsDeleteCmd
	decodeJSON(CmdListsDelete, payload, &c)
	key := []byte(string(c.List) + "\x00" + c.Value)
	b := tx.Bucket(bucketLists)
	if b.Get(key) == nil {
		return false
	}
	if err := b.Delete(key); err != nil {
		panic("cluster: deleting a list entry: " + err.Error())
	}
	bumpListsVersion(b)
	return true
}

func countList(b *bolt.Bucket, l lists.List) int {
	n := 0
	prefix := []byte(string(l) + "\x00")
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && len(k) >= len(prefix) && string(k[:len(prefix)]) == string(prefix); k, _ = c.Next() {
		n++
	}
	return n
}

func bumpListsVersion(b *bolt.Bucket) {
	var v uint64
	if old := b.Get(listsVersionKey); len(old) == 8 {
		v = binary.BigEndian.Uint64(old)
	}
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v+1)
	if err := b.Put(listsVersionKey, buf[:]); err != nil {
		panic("cluster: storing the lists version: " + err.Error())
	}
}

// ListEntries returns every entry of the lists in this node's copy.
func (f *FSM) ListEntries() ([]lists.Entry, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []lists.Entry
	err := f.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLists).ForEach(func(k, v []byte) error {
			if len(k) > 0 && k[0] == 0 {
				return nil // the version
			}
			var e lists.Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return nil // unreadable: of no use
			}
			out = append(out, e)
			return nil
		})
	})
	lists.SortEntries(out)
	return out, err
}

// ListsVersion changes whenever the lists do (snapshot restores included).
func (f *FSM) ListsVersion() (uint64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var v uint64
	err := f.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketLists).Get(listsVersionKey); len(b) == 8 {
			v = binary.BigEndian.Uint64(b)
		}
		return nil
	})
	return v, err
}

// ListsStore is the lists.Store of a cluster node: reads from the local
// copy, writes committed by a majority through the leader.
type ListsStore struct {
	node *Node
}

var _ lists.Store = (*ListsStore)(nil)

// NewListsStore returns the lists store backed by n.
func NewListsStore(n *Node) *ListsStore { return &ListsStore{node: n} }

// Put implements lists.Store.
func (s *ListsStore) Put(ctx context.Context, e lists.Entry) error {
	_, err := s.apply(ctx, EncodeListsPut(e))
	return err
}

// Delete implements lists.Store.
func (s *ListsStore) Delete(ctx context.Context, l lists.List, value string) (bool, error) {
	e, err := lists.NewEntry(l, value, "", time.Time{})
	if err != nil {
		return false, err
	}
	resp, err := s.apply(ctx, EncodeListsDelete(e.List, e.Value))
	if err != nil {
		return false, err
	}
	removed, _ := resp.(bool)
	return removed, nil
}

// Entries implements lists.Store.
func (s *ListsStore) Entries(context.Context) ([]lists.Entry, error) { return s.node.fsm.ListEntries() }

// Version implements lists.Store.
func (s *ListsStore) Version(context.Context) (uint64, error) { return s.node.fsm.ListsVersion() }

func (s *ListsStore) apply(ctx context.Context, cmd []byte) (any, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultWriteTimeout)
		defer cancel()
	}
	return s.node.Apply(ctx, cmd)
}
