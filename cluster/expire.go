package cluster

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// CmdExpire removes what expired, in every domain. It belongs to no
// domain; its type byte is part of the log format.
const CmdExpire CommandType = 3

// expireCmd is the payload of CmdExpire.
type expireCmd struct {
	Now time.Time `json:"now"`
}

// EncodeExpire returns the command removing what expired at now. The leader
// issues it with its own clock; followers apply the same now.
func EncodeExpire(now time.Time) []byte {
	return encodeJSON(CmdExpire, expireCmd{Now: now})
}

// ExpireResult is the response of a CmdExpire: how many entries it removed,
// by the names the domains report them under ("triplets" and "networks" for
// the greylist, "chunks" for abandoned partial chunked commands and the
// markers of completed ones whose expiry passed). Every name a domain
// reports is present, zero included.
type ExpireResult map[string]int

// Total is the number of entries removed.
func (r ExpireResult) Total() int {
	n := 0
	for _, v := range r {
		n += v
	}
	return n
}

// applyExpire calls every domain's expiry rule with the command's time, in
// the command's transaction.
func applyExpire(f *FSM, tx *bolt.Tx, payload []byte) any {
	var c expireCmd
	decodeJSON(CmdExpire, payload, &c)
	if c.Now.IsZero() {
		return invalid("expire without a time")
	}
	res := ExpireResult{}
	for _, d := range f.reg.domains {
		if d.expire == nil {
			continue
		}
		for what, n := range d.expire(tx, c.Now) {
			res[what] += n
		}
	}
	return res
}

// deleteWhere removes the entries of b whose value matches dead and returns
// how many it removed: the usual body of a domain's expiry rule. Keys are
// collected first: deleting under a moving bbolt cursor can skip entries.
func deleteWhere(b *bolt.Bucket, dead func(v []byte) bool) int {
	var keys [][]byte
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if dead(v) {
			keys = append(keys, append([]byte(nil), k...))
		}
	}
	for _, k := range keys {
		mustDelete(b, k)
	}
	return len(keys)
}
