package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/mxgate/mxgate/quarantine"
	"github.com/mxgate/mxgate/quarantine/quarantinetest"
)

// expiringStore expires through the leader's command, as the cluster does.
type expiringStore struct {
	*QuarantineStore
	node *Node
}

func (s expiringStore) ExpireAt(ctx context.Context, now time.Time) (int, error) {
	resp, err := s.node.Apply(ctx, EncodeExpire(now))
	if err != nil {
		return 0, err
	}
	return resp.(ExpireResult)["quarantine"], nil
}

// The replicated store behaves as the standalone one: the same suite.
func TestQuarantineStoreSuite(t *testing.T) {
	quarantinetest.Run(t, func(t *testing.T, maxBytes int64) quarantine.Store {
		tc := newTestCluster(t, 1)
		n := tc.nodes[tc.waitLeader()]
		return expiringStore{NewQuarantineStore(n, maxBytes), n}
	})
}

// A message quarantined through one node, larger than one log entry, is
// listed and read on another, and released from two others at once is
// spooled once. Refusals keep their identity through forwarding.
func TestQuarantineReplicated(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader()
	a := tc.follower(leader)
	c := 3 - leader - a
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Random bytes in base64 do not compress: the command is chunked.
	raw := make([]byte, 900<<10)
	_, _ = rand.Read(raw)
	msg := append([]byte("Subject: big\r\n\r\n"), base64.StdEncoding.EncodeToString(raw)...)
	e := quarantinetest.Entry("big1", 0)
	put, err := NewQuarantineStore(tc.nodes[a], 0).Put(ctx, e, bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("put through a follower: %v", err)
	}
	if put.Stored <= MaxEntrySize {
		t.Fatalf("compressed body of %d bytes: not over %d, the test does not chunk", put.Stored, MaxEntrySize)
	}
	storeC := NewQuarantineStore(tc.nodes[c], 0)
	waitFor(t, 10*time.Second, "the entry on a third node", func() bool {
		p, err := storeC.List(ctx, quarantine.Filter{Recipient: "user@example.com"})
		return err == nil && len(p.Entries) == 1
	})
	if b := quarantinetest.ReadBody(t, storeC, "big1"); !bytes.Equal(b, msg) {
		t.Fatalf("body on the third node: %d bytes, %d put, or different", len(b), len(msg))
	}

	sp := &quarantinetest.Spooler{}
	type result struct {
		e   quarantine.Entry
		err error
	}
	results := make(chan result, 2)
	for _, i := range []int{c, leader} {
		r := &quarantine.Releaser{Store: NewQuarantineStore(tc.nodes[i], 0), Node: tc.cfgs[i].ID, Spool: sp}
		go func() {
			e, err := r.Release(ctx, "big1", "admin")
			results <- result{e, err}
		}()
	}
	won := 0
	for range 2 {
		r := <-results
		switch {
		case r.err == nil:
			won++
		case !errors.Is(r.err, quarantine.ErrClaimed) && !errors.Is(r.err, quarantine.ErrReleased):
			t.Errorf("losing release: %v, want ErrClaimed or ErrReleased", r.err)
		}
	}
	if won != 1 || sp.Count() != 1 || !bytes.HasSuffix(sp.Data[0], msg) {
		t.Fatalf("%d releases won, %d spooled; want one, with the whole message", won, sp.Count())
	}
	storeA := NewQuarantineStore(tc.nodes[a], 0)
	waitFor(t, 10*time.Second, "the release seen where it was quarantined", func() bool {
		e, err := storeA.Get(ctx, "big1")
		return err == nil && e.State == quarantine.StateReleased
	})
	if _, err := (&quarantine.Releaser{Store: storeA, Node: tc.cfgs[a].ID, Spool: sp}).Release(ctx, "big1", "admin"); !errors.Is(err, quarantine.ErrReleased) {
		t.Errorf("release again from the first node: %v, want ErrReleased", err)
	}
	if sp.Count() != 1 {
		t.Errorf("%d spooled after releasing again", sp.Count())
	}

	// The cap's refusal is ErrFull on a follower too, and nothing is kept.
	_, err = NewQuarantineStore(tc.nodes[a], 10).Put(ctx, quarantinetest.Entry("small1", 1), bytes.NewReader(quarantinetest.Message("small1", 500)))
	if !errors.Is(err, quarantine.ErrFull) {
		t.Errorf("put over the cap through a follower: %v, want ErrFull", err)
	}
	if _, err := NewQuarantineStore(tc.nodes[leader], 0).Get(ctx, "small1"); !errors.Is(err, quarantine.ErrNotFound) {
		t.Errorf("refused put kept: %v", err)
	}
}

// Without quorum a put fails (the session answers 451) instead of waiting.
func TestQuarantinePutWithoutQuorum(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader()
	a := tc.follower(leader)
	for _, i := range tc.running() {
		if i != a {
			tc.stop(i)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := NewQuarantineStore(tc.nodes[a], 0).Put(ctx, quarantinetest.Entry("nq1", 0), bytes.NewReader(quarantinetest.Message("nq1", 500)))
	if err == nil || quarantine.IsRefusal(err) {
		t.Fatalf("put without quorum: %v, want a store failure", err)
	}
}

// The daily report's time (issue 13) is a command: recorded through one
// leader, a new leader reads it after the old one is gone, never moves it
// back, and moves it forward on every node.
func TestQuarantineReportTimeSurvivesLeaderChange(t *testing.T) {
	tc := newTestCluster(t, 3)
	ctx := context.Background()
	first := tc.waitLeader()
	at := t0.Add(7*time.Hour + 42*time.Nanosecond)
	if err := NewQuarantineStore(tc.nodes[first], 0).ReportSent(ctx, at); err != nil {
		t.Fatal(err)
	}
	tc.stop(first)
	second := tc.waitLeader()
	s := NewQuarantineStore(tc.nodes[second], 0)
	waitFor(t, 5*time.Second, "the report time on the new leader", func() bool {
		last, err := s.LastReport(ctx)
		return err == nil && last.Equal(at)
	})
	if err := s.ReportSent(ctx, at.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if last, _ := s.LastReport(ctx); !last.Equal(at) {
		t.Errorf("an older report time moved the record back to %v", last)
	}
	later := at.Add(24 * time.Hour)
	if err := NewQuarantineStore(tc.nodes[tc.follower(second)], 0).ReportSent(ctx, later); err != nil {
		t.Fatalf("recorded through a follower: %v", err)
	}
	for _, i := range tc.running() {
		s := NewQuarantineStore(tc.nodes[i], 0)
		waitFor(t, 5*time.Second, "the later report time on every node", func() bool {
			last, err := s.LastReport(ctx)
			return err == nil && last.Equal(later)
		})
	}
}
