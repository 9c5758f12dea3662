// Package quarantinetest holds the behaviour every quarantine.Store must
// have, as one suite that the standalone store's tests and the cluster's
// run alike.
package quarantinetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/quarantine"
)

// T0 is the time the suite's entries are received around.
var T0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// NewStore returns an empty store capping bodies at maxBytes (0: none).
type NewStore func(t *testing.T, maxBytes int64) quarantine.Store

// Run runs the suite.
func Run(t *testing.T, newStore NewStore) {
	t.Run("PutGetBody", func(t *testing.T) { testPutGetBody(t, newStore(t, 0)) })
	t.Run("ListFiltersAndPaging", func(t *testing.T) { testList(t, newStore(t, 0)) })
	t.Run("DeleteAndExpire", func(t *testing.T) { testDeleteExpire(t, newStore(t, 0)) })
	t.Run("Cap", func(t *testing.T) { testCap(t, newStore) })
	t.Run("ConcurrentReleasesSpoolOnce", func(t *testing.T) { testConcurrentRelease(t, newStore(t, 0)) })
	t.Run("StaleClaimTakenOver", func(t *testing.T) { testTakeOver(t, newStore(t, 0)) })
	t.Run("ReportTime", func(t *testing.T) { testReportTime(t, newStore(t, 0)) })
}

// testReportTime: the last report's time is zero until recorded, then
// read back to the nanosecond, and never moves back.
func testReportTime(t *testing.T, s quarantine.Store) {
	c := ctx(t)
	if last, err := s.LastReport(c); err != nil || !last.IsZero() {
		t.Fatalf("new store: last report %v, %v", last, err)
	}
	at := T0.Add(time.Hour + 123*time.Nanosecond)
	for _, rec := range []time.Time{at, at.Add(-time.Minute), at} {
		if err := s.ReportSent(c, rec); err != nil {
			t.Fatalf("recording %v: %v", rec, err)
		}
	}
	if last, err := s.LastReport(c); err != nil || !last.Equal(at) {
		t.Errorf("last report %v, %v, want %v", last, err, at)
	}
	if err := s.ReportSent(c, time.Time{}); !errors.Is(err, quarantine.ErrInvalid) {
		t.Errorf("recording the zero time: %v", err)
	}
}

// Entry returns a valid entry received at T0 plus n minutes.
func Entry(id string, n int) quarantine.Entry {
	at := T0.Add(time.Duration(n) * time.Minute)
	return quarantine.Entry{
		ID: id, Time: at, Node: "mx1", ClientIP: "192.0.2.1", Sender: "spammer@bad.example",
		Recipients: []string{"user@example.com"}, Subject: "offer " + id, Score: 9,
		Symbols: []string{"GTUBE=9"}, Reason: quarantine.ReasonSpam, ExpiresAt: at.Add(7 * 24 * time.Hour),
	}
}

var words = strings.Fields(`the offer you cannot refuse money fast free winner click here now today only
	limited account verify bank transfer prize claim urgent reply dear friend business proposal million
	dollars secure confidential deal discount cheap pills watches loan credit approved unsubscribe`)

// Message returns a message of about size bytes of text that compresses
// like prose: words of a small vocabulary in a pseudo-random order.
func Message(id string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Received: from x by mx1 id %s\r\nX-Spam-Status: Yes, score=9\r\nSubject: offer %s\r\n\r\n", id, id)
	x := uint64(len(id))*2654435761 + 7
	for line := 0; b.Len() < size; line++ {
		for i := 0; i < 10; i++ {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			b.WriteString(words[x%uint64(len(words))])
			b.WriteByte(' ')
		}
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// Put stores an entry and its message, failing the test on error.
func Put(t *testing.T, s quarantine.Store, e quarantine.Entry, msg []byte) quarantine.Entry {
	t.Helper()
	got, err := s.Put(ctx(t), e, bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("put %s: %v", e.ID, err)
	}
	return got
}

// ReadBody returns the whole message of an entry.
func ReadBody(t *testing.T, s quarantine.Store, id string) []byte {
	t.Helper()
	rc, err := s.Body(ctx(t), id)
	if err != nil {
		t.Fatalf("body %s: %v", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading body %s: %v", id, err)
	}
	return b
}

func testPutGetBody(t *testing.T, s quarantine.Store) {
	msg := Message("a1", 20000)
	put := Put(t, s, Entry("a1", 0), msg)
	if put.State != quarantine.StateHeld || put.Size != int64(len(msg)) || put.Stored <= 0 || put.Stored >= put.Size {
		t.Fatalf("stored entry %+v: want held, size %d, a smaller compressed size", put, len(msg))
	}
	got, err := s.Get(ctx(t), "a1")
	if err != nil || got.Subject != "offer a1" || got.Sender != "spammer@bad.example" || got.Stored != put.Stored {
		t.Fatalf("get: %+v %v", got, err)
	}
	if b := ReadBody(t, s, "a1"); !bytes.Equal(b, msg) {
		t.Fatalf("body: %d bytes back, %d put, or different", len(b), len(msg))
	}
	if _, err := s.Get(ctx(t), "nope"); !errors.Is(err, quarantine.ErrNotFound) {
		t.Errorf("get of a missing id: %v, want ErrNotFound", err)
	}
	if _, err := s.Put(ctx(t), Entry("a1", 5), bytes.NewReader(msg)); !errors.Is(err, quarantine.ErrExists) {
		t.Errorf("second put of another message under a1: %v, want ErrExists", err)
	}
	bad := Entry("BAD/ID", 0)
	if _, err := s.Put(ctx(t), bad, bytes.NewReader(msg)); !errors.Is(err, quarantine.ErrInvalid) {
		t.Errorf("put with id %q: %v, want ErrInvalid", bad.ID, err)
	}
	st, err := s.Stats(ctx(t))
	if err != nil || st.Entries != 1 || st.Held != 1 || st.Bytes != put.Stored {
		t.Errorf("stats %+v %v: want 1 entry held of %d bytes", st, err, put.Stored)
	}
}

func ids(p quarantine.Page) string {
	var out []string
	for _, e := range p.Entries {
		out = append(out, e.ID)
	}
	return strings.Join(out, ",")
}

func testList(t *testing.T, s quarantine.Store) {
	mk := func(id string, n int, f func(*quarantine.Entry)) {
		e := Entry(id, n)
		f(&e)
		Put(t, s, e, Message(id, 500))
	}
	mk("l1", 1, func(e *quarantine.Entry) {})
	mk("l2", 2, func(e *quarantine.Entry) { e.Recipients = []string{"Boss@Example.com", "x@example.com"} })
	mk("l3", 3, func(e *quarantine.Entry) { e.Sender = "news@mail.shop.example" })
	mk("l4", 4, func(e *quarantine.Entry) { e.Reason, e.Virus = quarantine.ReasonVirus, "Eicar-Test-Signature" })
	mk("l5", 5, func(e *quarantine.Entry) { e.Reason = quarantine.ReasonRejected; e.Sender = "" })
	for _, c := range []struct {
		name string
		f    quarantine.Filter
		want string
	}{
		{"all, newest first", quarantine.Filter{}, "l5,l4,l3,l2,l1"},
		{"recipient, any case", quarantine.Filter{Recipient: "boss@EXAMPLE.com"}, "l2"},
		{"sender address", quarantine.Filter{Sender: "SPAMMER@bad.example"}, "l4,l2,l1"},
		{"sender domain and subdomains", quarantine.Filter{Sender: "shop.example"}, "l3"},
		{"parent domain", quarantine.Filter{Sender: "example"}, "l4,l3,l2,l1"},
		{"reason", quarantine.Filter{Reason: quarantine.ReasonVirus}, "l4"},
		{"time range", quarantine.Filter{Since: T0.Add(2 * time.Minute), Until: T0.Add(4 * time.Minute)}, "l4,l3,l2"},
		{"state", quarantine.Filter{State: quarantine.StateReleased}, ""},
	} {
		p, err := s.List(ctx(t), c.f)
		if err != nil || ids(p) != c.want || p.Next != "" {
			t.Errorf("%s: %q next %q (%v), want %q", c.name, ids(p), p.Next, err, c.want)
		}
	}
	// Pages of two walk every entry once, in order.
	var walked []string
	f := quarantine.Filter{Limit: 2}
	for range 10 {
		p, err := s.List(ctx(t), f)
		if err != nil {
			t.Fatal(err)
		}
		walked = append(walked, ids(p))
		if p.Next == "" {
			break
		}
		f.Before = p.Next
	}
	if got := strings.Join(walked, "|"); got != "l5,l4|l3,l2|l1" {
		t.Errorf("pages of 2: %s", got)
	}
	if _, err := s.List(ctx(t), quarantine.Filter{Before: "../x"}); !errors.Is(err, quarantine.ErrInvalid) {
		t.Errorf("bad cursor: %v, want ErrInvalid", err)
	}
}

func testDeleteExpire(t *testing.T, s quarantine.Store) {
	a := Put(t, s, Entry("d1", 0), Message("d1", 5000))
	b := Entry("d2", 1)
	b.Reason, b.ExpiresAt = quarantine.ReasonRejected, b.Time.Add(24*time.Hour)
	Put(t, s, b, Message("d2", 5000))
	c := Put(t, s, Entry("d3", 2), Message("d3", 5000))

	del, err := s.Delete(ctx(t), "d1", "alice", T0.Add(time.Hour))
	if err != nil || del.State != quarantine.StateDeleted || del.By != "alice" || del.Stored != 0 {
		t.Fatalf("delete: %+v %v", del, err)
	}
	if _, err := s.Body(ctx(t), "d1"); !errors.Is(err, quarantine.ErrNotFound) {
		t.Errorf("body of a deleted entry: %v, want ErrNotFound", err)
	}
	if _, err := s.Delete(ctx(t), "d1", "bob", T0.Add(2*time.Hour)); !errors.Is(err, quarantine.ErrDeleted) {
		t.Errorf("second delete: %v, want ErrDeleted", err)
	}
	st, _ := s.Stats(ctx(t))
	if st.Entries != 3 || st.Held != 2 {
		t.Errorf("stats after delete %+v, want 3 entries, 2 held", st)
	}
	_ = a
	// d3 is being released when its time comes: a claim keeps it.
	if _, err := s.Claim(ctx(t), quarantine.ClaimRequest{ID: "d3", Node: "mx2", At: c.ExpiresAt.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	n, err := expire(t, s, T0.Add(2*24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("expire after 2 days: %d %v, want the rejected copy (1)", n, err)
	}
	if _, err := s.Get(ctx(t), "d2"); !errors.Is(err, quarantine.ErrNotFound) {
		t.Errorf("d2 after its rejected lifetime: %v", err)
	}
	n, err = expire(t, s, c.ExpiresAt.Add(time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("expire after 7 days: %d %v, want d1 only (d3 is claimed)", n, err)
	}
	if e, err := s.Get(ctx(t), "d3"); err != nil || e.State != quarantine.StateClaimed {
		t.Errorf("claimed d3 at its expiry: %+v %v", e, err)
	}
	if n, _ = expire(t, s, c.ExpiresAt.Add(48*time.Hour)); n != 1 {
		t.Errorf("a claim nobody completed for a day: %d expired, want 1", n)
	}
	// Empty again; the three expired entries are counted.
	if st, _ := s.Stats(ctx(t)); st != (quarantine.Stats{Expired: 3}) {
		t.Errorf("stats of an emptied quarantine: %+v, want only Expired: 3", st)
	}
}

// Expirer is implemented by test harnesses whose store expires by another
// path (the cluster's CmdExpire).
type Expirer interface {
	ExpireAt(ctx context.Context, now time.Time) (int, error)
}

func expire(t *testing.T, s quarantine.Store, now time.Time) (int, error) {
	if e, ok := s.(Expirer); ok {
		return e.ExpireAt(ctx(t), now)
	}
	return s.Expire(ctx(t), now)
}

func testCap(t *testing.T, newStore NewStore) {
	msg := Message("c1", 30000)
	probe := Put(t, newStore(t, 0), Entry("c1", 0), msg)
	s := newStore(t, probe.Stored*2+probe.Stored/2) // room for two
	Put(t, s, Entry("c1", 0), msg)
	Put(t, s, Entry("c2", 1), Message("c2", 30000))
	_, err := s.Put(ctx(t), Entry("c3", 2), bytes.NewReader(Message("c3", 30000)))
	if !errors.Is(err, quarantine.ErrFull) {
		t.Fatalf("third put over the cap: %v, want ErrFull", err)
	}
	if _, err := s.Get(ctx(t), "c3"); !errors.Is(err, quarantine.ErrNotFound) {
		t.Errorf("refused put left an entry: %v", err)
	}
	if _, err := s.Delete(ctx(t), "c1", "", T0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	Put(t, s, Entry("c3", 2), Message("c3", 30000))
}

// Spooler records what it spools.
type Spooler struct {
	mu   sync.Mutex
	Msgs []quarantine.Spooled
	Data [][]byte
	// Gate, when set, holds every spool until it is closed.
	Gate chan struct{}
}

// Spool implements quarantine.Spooler.
func (s *Spooler) Spool(ctx context.Context, m quarantine.Spooled) (string, error) {
	if s.Gate != nil {
		select {
		case <-s.Gate:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	b, err := io.ReadAll(m.Body)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Msgs = append(s.Msgs, m)
	s.Data = append(s.Data, append(append([]byte(nil), m.Header...), b...))
	return fmt.Sprintf("q%d", len(s.Msgs)), nil
}

// Count is how many messages were spooled.
func (s *Spooler) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.Msgs)
}

func testConcurrentRelease(t *testing.T, s quarantine.Store) {
	msg := Message("r1", 3000)
	Put(t, s, Entry("r1", 0), msg)
	sp := &Spooler{Gate: make(chan struct{})}
	var rels []*quarantine.Releaser
	for _, node := range []string{"mx1", "mx2", "mx3", "mx3"} {
		rels = append(rels, &quarantine.Releaser{Store: s, Node: node, Spool: sp})
	}
	// The winner's spool waits at the gate: the losers answer first,
	// while the winner holds its claim.
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(rels))
	for i, r := range rels {
		go func() {
			_, err := r.Release(ctx(t), "r1", "admin")
			results <- result{i, err}
		}()
	}
	errs := make([]error, len(rels))
	for range len(rels) - 1 {
		r := <-results
		errs[r.i] = r.err
	}
	close(sp.Gate)
	r := <-results
	errs[r.i] = r.err
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, quarantine.ErrClaimed):
			t.Errorf("release %d: %v, want ErrClaimed for the losers", i, err)
		}
	}
	if won != 1 || sp.Count() != 1 {
		t.Fatalf("%d releases won, %d spooled; want exactly one", won, sp.Count())
	}
	if !bytes.HasPrefix(sp.Data[0], []byte("X-Quarantine-Released: by admin at ")) || !bytes.HasSuffix(sp.Data[0], msg) {
		t.Errorf("spooled message starts %q", sp.Data[0][:min(len(sp.Data[0]), 120)])
	}
	e, err := s.Get(ctx(t), "r1")
	if err != nil || e.State != quarantine.StateReleased || e.QueueID != "q1" || e.By != "admin" {
		t.Errorf("after release: %+v %v", e, err)
	}
	if _, err := rels[0].Release(ctx(t), "r1", "admin"); !errors.Is(err, quarantine.ErrReleased) {
		t.Errorf("release after the release: %v, want ErrReleased", err)
	}
	if sp.Count() != 1 {
		t.Errorf("%d spooled after a second release", sp.Count())
	}
	if st, _ := s.Stats(ctx(t)); st.Bytes != 0 || st.Held != 0 {
		t.Errorf("stats after release %+v: the body should be gone", st)
	}
}

func testTakeOver(t *testing.T, s quarantine.Store) {
	Put(t, s, Entry("t1", 0), Message("t1", 3000))
	Put(t, s, Entry("t2", 1), Message("t2", 3000))
	claimedAt := T0.Add(time.Hour)
	// mx1 wins the claims and dies before spooling.
	for _, id := range []string{"t1", "t2"} {
		if _, err := s.Claim(ctx(t), quarantine.ClaimRequest{ID: id, Node: "mx1", By: "alice", At: claimedAt}); err != nil {
			t.Fatal(err)
		}
	}
	now := claimedAt.Add(time.Minute)
	sp := &Spooler{}
	r := &quarantine.Releaser{Store: s, Node: "mx2", Spool: sp, Now: func() time.Time { return now }}
	if _, err := r.Release(ctx(t), "t2", "bob"); !errors.Is(err, quarantine.ErrClaimed) {
		t.Errorf("release of a fresh claim of another node: %v, want ErrClaimed", err)
	}
	if n, err := r.Recover(ctx(t), true); err != nil || n != 0 || sp.Count() != 0 {
		t.Fatalf("recover within the claim timeout: %d %v, %d spooled; want nothing", n, err, sp.Count())
	}
	now = claimedAt.Add(quarantine.ClaimTimeout)
	// The next release request takes t2 over...
	if e, err := r.Release(ctx(t), "t2", "bob"); err != nil || e.State != quarantine.StateReleased || e.Claimant != "mx2" {
		t.Fatalf("release of a stale claim: %+v %v", e, err)
	}
	// ...and the leader's recovery t1, as alice asked.
	if n, err := r.Recover(ctx(t), true); err != nil || n != 1 {
		t.Fatalf("recover after the claim timeout: %d %v, want 1", n, err)
	}
	if sp.Count() != 2 {
		t.Fatalf("%d spooled, want t1 and t2 once each", sp.Count())
	}
	e, _ := s.Get(ctx(t), "t1")
	if e.State != quarantine.StateReleased || e.Claimant != "mx2" || e.By != "alice" {
		t.Errorf("t1 after takeover: %+v", e)
	}
	// mx1 comes back and confirms its old claim: too late.
	if _, err := s.Confirm(ctx(t), quarantine.ConfirmRequest{ID: "t1", Node: "mx1", ClaimedAt: claimedAt, At: now}); !errors.Is(err, quarantine.ErrLostClaim) {
		t.Errorf("confirm of a claim taken over: %v, want ErrLostClaim", err)
	}
	if n, _ := r.Recover(ctx(t), true); n != 0 || sp.Count() != 2 {
		t.Errorf("a second recovery released %d more", n)
	}
}
