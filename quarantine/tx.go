package quarantine

// The quarantine's state in bbolt, and every change to it as a function of
// a write transaction: LocalStore runs them in its own transactions, the
// cluster's FSM in the transactions of the commands that carry them, so
// both stores behave alike. A function either returns a store error
// (Code not "") having written nothing, or succeeds; any other error is a
// storage failure.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The buckets; their names are part of the cluster's snapshot format.
var (
	BucketEntries = []byte("quarantine_entries") // id -> JSON Entry
	BucketBodies  = []byte("quarantine_bodies")  // id -> zstd body
	BucketStats   = []byte("quarantine_stats")   // name -> uint64 BE
)

// Buckets lists the quarantine's buckets.
func Buckets() [][]byte { return [][]byte{BucketEntries, BucketBodies, BucketStats} }

var (
	statEntries = []byte("entries")
	statHeld    = []byte("held")
	statBytes   = []byte("bytes")
	statExpired = []byte("expired")
	// statReportSent is the end of the period the last daily report
	// covered, Unix nanoseconds (absent: never).
	statReportSent = []byte("report_sent")
)

// PutRequest is a Put as it travels: the entry and the cap it is checked
// against (the proposer's quarantine.max_bytes; 0 is no cap).
type PutRequest struct {
	Entry    Entry `json:"e"`
	MaxBytes int64 `json:"max,omitempty"`
}

// ClaimRequest claims an entry for release by Node; By is who asked.
type ClaimRequest struct {
	ID   string    `json:"id"`
	Node string    `json:"node"`
	By   string    `json:"by,omitempty"`
	At   time.Time `json:"at"`
	// Token, random, makes the claim's write idempotent: the same
	// request applied twice (a retried cluster write) is won twice, where
	// any other claim of a claimed entry fails.
	Token string `json:"token,omitempty"`
}

// ConfirmRequest marks a claimed entry released once Node spooled it.
type ConfirmRequest struct {
	ID        string    `json:"id"`
	Node      string    `json:"node"`
	ClaimedAt time.Time `json:"claimed_at"`
	At        time.Time `json:"at"`
	QueueID   string    `json:"queue_id,omitempty"`
}

// UnclaimRequest gives a claim up (the spool failed).
type UnclaimRequest struct {
	ID        string    `json:"id"`
	Node      string    `json:"node"`
	ClaimedAt time.Time `json:"claimed_at"`
}

// DeleteRequest deletes an entry's body and marks it deleted.
type DeleteRequest struct {
	ID string    `json:"id"`
	By string    `json:"by,omitempty"`
	At time.Time `json:"at"`
}

// ReportSentRequest records that the daily report covered up to At.
type ReportSentRequest struct {
	At time.Time `json:"at"`
}

// ReportSentTx records the time the last report covered; the record only
// moves forward (a command applied late or twice changes nothing), and
// the time it holds is returned.
func ReportSentTx(tx *bolt.Tx, req ReportSentRequest) (time.Time, error) {
	if req.At.IsZero() || req.At.UnixNano() <= 0 {
		return time.Time{}, fmt.Errorf("%w: report time %v", ErrInvalid, req.At)
	}
	if last := LastReportTx(tx); !req.At.After(last) {
		return last, nil
	}
	if err := tx.Bucket(BucketStats).Put(statReportSent, binary.BigEndian.AppendUint64(nil, uint64(req.At.UnixNano()))); err != nil {
		return time.Time{}, fmt.Errorf("quarantine: storing the report time: %w", err)
	}
	return time.Unix(0, req.At.UnixNano()).UTC(), nil
}

// LastReportTx is the time the last report covered (zero: none yet).
func LastReportTx(tx *bolt.Tx) time.Time {
	v := tx.Bucket(BucketStats).Get(statReportSent)
	if len(v) != 8 {
		return time.Time{}
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC()
}

// CreateBuckets makes the quarantine's buckets in tx.
func CreateBuckets(tx *bolt.Tx) error {
	for _, b := range Buckets() {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return fmt.Errorf("quarantine: bucket %s: %w", b, err)
		}
	}
	return nil
}

// PutTx stores a new entry and its compressed body, all or nothing.
func PutTx(tx *bolt.Tx, req PutRequest, body []byte) (Entry, error) {
	e := req.Entry
	if err := e.check(); err != nil {
		return Entry{}, err
	}
	if len(body) == 0 || len(body) > MaxStoredBytes {
		return Entry{}, fmt.Errorf("%w: %s: %d bytes compressed", ErrTooLarge, e.ID, len(body))
	}
	entries := tx.Bucket(BucketEntries)
	if entries.Get([]byte(e.ID)) != nil {
		// The same write applied twice (a cluster write retried after its
		// answer was lost) succeeds twice.
		if old, err := getEntry(tx, e.ID); err == nil && old.Time.Equal(e.Time) && old.Size == e.Size && old.Node == e.Node {
			return old, nil
		}
		return Entry{}, fmt.Errorf("%w: %s", ErrExists, e.ID)
	}
	st := readStats(tx)
	if req.MaxBytes > 0 && st.Bytes+int64(len(body)) > req.MaxBytes {
		return Entry{}, fmt.Errorf("%w: %d of %d bytes used, %s needs %d", ErrFull, st.Bytes, req.MaxBytes, e.ID, len(body))
	}
	e.State, e.Claimant, e.ClaimedAt, e.ClaimToken, e.By, e.Done, e.QueueID = StateHeld, "", time.Time{}, "", "", time.Time{}, ""
	e.Stored = int64(len(body))
	if err := putEntry(entries, &e); err != nil {
		return Entry{}, err
	}
	if err := tx.Bucket(BucketBodies).Put([]byte(e.ID), body); err != nil {
		return Entry{}, fmt.Errorf("quarantine: storing body %s: %w", e.ID, err)
	}
	st.Entries++
	st.Held++
	st.Bytes += e.Stored
	return e, writeStats(tx, st)
}

// ClaimTx claims an entry for release; see Entry states in the package
// documentation.
func ClaimTx(tx *bolt.Tx, req ClaimRequest) (Entry, error) {
	e, err := getEntry(tx, req.ID)
	if err != nil {
		return Entry{}, err
	}
	if req.Node == "" || req.At.IsZero() {
		return Entry{}, fmt.Errorf("%w: claim of %s without node or time", ErrInvalid, req.ID)
	}
	if e.State == StateClaimed && req.Token != "" && e.ClaimToken == req.Token {
		return e, nil // the same claim applied twice
	}
	wasHeld := e.State == StateHeld
	if err := e.claim(req.Node, CleanBy(req.By), req.At); err != nil {
		return Entry{}, err
	}
	e.ClaimToken = req.Token
	if err := putEntry(tx.Bucket(BucketEntries), &e); err != nil {
		return Entry{}, err
	}
	if wasHeld {
		st := readStats(tx)
		st.Held--
		return e, writeStats(tx, st)
	}
	return e, nil
}

// ConfirmTx marks a claimed entry released and drops its body.
func ConfirmTx(tx *bolt.Tx, req ConfirmRequest) (Entry, error) {
	e, err := getEntry(tx, req.ID)
	if err != nil {
		return Entry{}, err
	}
	if e.State == StateReleased && e.Claimant == req.Node && e.ClaimedAt.Equal(req.ClaimedAt) {
		return e, nil // a retried confirm
	}
	if err := e.holds(req.Node, req.ClaimedAt); err != nil {
		return Entry{}, err
	}
	e.State, e.Done, e.QueueID = StateReleased, req.At, req.QueueID
	return e, dropBody(tx, &e, false)
}

// UnclaimTx puts a claimed entry back to held.
func UnclaimTx(tx *bolt.Tx, req UnclaimRequest) (Entry, error) {
	e, err := getEntry(tx, req.ID)
	if err != nil {
		return Entry{}, err
	}
	if err := e.holds(req.Node, req.ClaimedAt); err != nil {
		return Entry{}, err
	}
	e.State, e.Claimant, e.ClaimedAt, e.By, e.ClaimToken = StateHeld, "", time.Time{}, "", ""
	if err := putEntry(tx.Bucket(BucketEntries), &e); err != nil {
		return Entry{}, err
	}
	st := readStats(tx)
	st.Held++
	return e, writeStats(tx, st)
}

// DeleteTx drops a held entry's body (or one whose claim is stale) and
// marks it deleted; the metadata stays until it expires.
func DeleteTx(tx *bolt.Tx, req DeleteRequest) (Entry, error) {
	e, err := getEntry(tx, req.ID)
	if err != nil {
		return Entry{}, err
	}
	switch {
	case e.State == StateDeleted && e.Done.Equal(req.At):
		return e, nil // the same delete applied twice
	case e.State == StateHeld:
	case e.State == StateClaimed && !e.StaleClaim(req.At):
		return Entry{}, fmt.Errorf("%w: %s is being released by %s", ErrClaimed, e.ID, e.Claimant)
	case e.State == StateClaimed:
	case e.State == StateReleased:
		return Entry{}, fmt.Errorf("%w: %s", ErrReleased, e.ID)
	default:
		return Entry{}, fmt.Errorf("%w: %s", ErrDeleted, e.ID)
	}
	wasHeld := e.State == StateHeld
	e.State, e.By, e.Done = StateDeleted, CleanBy(req.By), req.At
	return e, dropBody(tx, &e, wasHeld)
}

// ExpireTx removes the entries expired at now (Entry.Expired) and returns
// how many.
func ExpireTx(tx *bolt.Tx, now time.Time) (int, error) {
	entries, bodies := tx.Bucket(BucketEntries), tx.Bucket(BucketBodies)
	st := readStats(tx)
	var dead [][]byte
	c := entries.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var e Entry
		if err := json.Unmarshal(v, &e); err != nil || e.Expired(now) {
			dead = append(dead, append([]byte(nil), k...))
			if err == nil {
				st.Bytes -= int64(len(bodies.Get(k)))
				if e.State == StateHeld {
					st.Held--
				}
			}
		}
	}
	for _, k := range dead {
		if err := entries.Delete(k); err != nil {
			return 0, fmt.Errorf("quarantine: expiring %s: %w", k, err)
		}
		if err := bodies.Delete(k); err != nil {
			return 0, fmt.Errorf("quarantine: expiring body %s: %w", k, err)
		}
	}
	if len(dead) == 0 {
		return 0, nil
	}
	st.Entries -= int64(len(dead))
	st.Expired += int64(len(dead))
	return len(dead), writeStats(tx, fixStats(st))
}

// GetTx reads one entry.
func GetTx(tx *bolt.Tx, id string) (Entry, error) { return getEntry(tx, id) }

// BodyTx returns a copy of an entry's compressed body.
func BodyTx(tx *bolt.Tx, id string) ([]byte, error) {
	e, err := getEntry(tx, id)
	if err != nil {
		return nil, err
	}
	b := tx.Bucket(BucketBodies).Get([]byte(id))
	if b == nil {
		return nil, fmt.Errorf("%w: %s is %s, its body is gone", ErrNotFound, id, e.State)
	}
	return bytes.Clone(b), nil
}

// ListTx returns a page of the entries f selects, newest first.
func ListTx(tx *bolt.Tx, f Filter) (Page, error) {
	if f.Before != "" && !ValidID(f.Before) {
		return Page{}, fmt.Errorf("%w: before %q", ErrInvalid, f.Before)
	}
	limit := f.limit()
	page := Page{Entries: []Entry{}}
	c := tx.Bucket(BucketEntries).Cursor()
	var k, v []byte
	if f.Before == "" {
		k, v = c.Last()
	} else if k, _ = c.Seek([]byte(f.Before)); k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	for scanned := 1; k != nil; k, v = c.Prev() {
		var e Entry
		if json.Unmarshal(v, &e) == nil && f.match(&e) {
			if len(page.Entries) == limit {
				page.Next = page.Entries[len(page.Entries)-1].ID
				return page, nil
			}
			page.Entries = append(page.Entries, e)
		}
		if scanned++; scanned > maxScan {
			page.Next = string(k) // k was read: the next page starts below it
			return page, nil
		}
	}
	return page, nil
}

// StatsTx reads the quarantine's size.
func StatsTx(tx *bolt.Tx) Stats { return readStats(tx) }

func getEntry(tx *bolt.Tx, id string) (Entry, error) {
	if !ValidID(id) {
		return Entry{}, fmt.Errorf("%w: id %q", ErrInvalid, id)
	}
	v := tx.Bucket(BucketEntries).Get([]byte(id))
	if v == nil {
		return Entry{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	var e Entry
	if err := json.Unmarshal(v, &e); err != nil {
		return Entry{}, fmt.Errorf("%w: %s does not decode: %v", ErrNotFound, id, err)
	}
	return e, nil
}

func putEntry(b *bolt.Bucket, e *Entry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("%w: encoding %s: %v", ErrInvalid, e.ID, err)
	}
	if err := b.Put([]byte(e.ID), v); err != nil {
		return fmt.Errorf("quarantine: storing %s: %w", e.ID, err)
	}
	return nil
}

// dropBody removes e's body, stores e and updates the stats.
func dropBody(tx *bolt.Tx, e *Entry, wasHeld bool) error {
	st := readStats(tx)
	st.Bytes -= int64(len(tx.Bucket(BucketBodies).Get([]byte(e.ID))))
	if wasHeld {
		st.Held--
	}
	e.Stored = 0
	if err := tx.Bucket(BucketBodies).Delete([]byte(e.ID)); err != nil {
		return fmt.Errorf("quarantine: removing body %s: %w", e.ID, err)
	}
	if err := putEntry(tx.Bucket(BucketEntries), e); err != nil {
		return err
	}
	return writeStats(tx, fixStats(st))
}

func readStats(tx *bolt.Tx) Stats {
	b := tx.Bucket(BucketStats)
	get := func(k []byte) int64 {
		if v := b.Get(k); len(v) == 8 {
			return int64(binary.BigEndian.Uint64(v))
		}
		return 0
	}
	return Stats{Entries: get(statEntries), Held: get(statHeld), Bytes: get(statBytes), Expired: get(statExpired)}
}

func writeStats(tx *bolt.Tx, st Stats) error {
	b := tx.Bucket(BucketStats)
	for _, kv := range []struct {
		k []byte
		v int64
	}{{statEntries, st.Entries}, {statHeld, st.Held}, {statBytes, st.Bytes}, {statExpired, st.Expired}} {
		if err := b.Put(kv.k, binary.BigEndian.AppendUint64(nil, uint64(kv.v))); err != nil {
			return fmt.Errorf("quarantine: storing stats: %w", err)
		}
	}
	return nil
}

// fixStats keeps counters from going below zero should an entry have been
// unreadable.
func fixStats(st Stats) Stats {
	st.Entries, st.Held, st.Bytes = max(st.Entries, 0), max(st.Held, 0), max(st.Bytes, 0)
	return st
}
