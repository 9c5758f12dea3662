package cluster

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/lists"
)

// An entry added through a follower is applied on every node, refuses mail
// there, and its removal through another node is seen everywhere.
func TestListsReplicated(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader()
	follower := (leader + 1) % 3
	other := (leader + 2) % 3
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := lists.NewEntry(lists.Block, "Spammer@Bad.Example", "seen on mx2", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := NewListsStore(tc.nodes[follower]).Put(ctx, e); err != nil {
		t.Fatalf("put through a follower: %v", err)
	}
	check := &lists.Check{Store: NewListsStore(tc.nodes[other]), Logger: slog.New(slog.DiscardHandler)}
	sender := &filter.Sender{Conn: &filter.Conn{IP: netip.MustParseAddr("192.0.2.9")}, From: "spammer@bad.example"}
	waitFor(t, 10*time.Second, "the entry refusing mail on a third node", func() bool {
		return check.CheckSender(ctx, sender).Action == filter.Reject
	})
	for i := range tc.nodes {
		es, err := NewListsStore(tc.nodes[i]).Entries(ctx)
		if err != nil || len(es) != 1 || es[0] != e {
			// Wait for the slowest follower before judging.
			waitFor(t, 10*time.Second, "the entry on every node", func() bool {
				es, err = NewListsStore(tc.nodes[i]).Entries(ctx)
				return err == nil && len(es) == 1
			})
			if es[0] != e {
				t.Errorf("node %d holds %+v, want %+v", i, es[0], e)
			}
		}
	}
	removed, err := NewListsStore(tc.nodes[other]).Delete(ctx, lists.Block, "spammer@BAD.example")
	if err != nil || !removed {
		t.Fatalf("delete through another node: %v %v", removed, err)
	}
	waitFor(t, 10*time.Second, "the removal seen where the entry was added", func() bool {
		es, _ := NewListsStore(tc.nodes[follower]).Entries(ctx)
		return len(es) == 0
	})
	if removed, err := NewListsStore(tc.nodes[leader]).Delete(ctx, lists.Block, "spammer@bad.example"); err != nil || removed {
		t.Errorf("second delete: %v %v, want nothing removed", removed, err)
	}
	if check.CheckSender(ctx, sender).Action != filter.Accept {
		waitFor(t, 10*time.Second, "the check to see the removal", func() bool {
			return check.CheckSender(ctx, sender).Action == filter.Accept
		})
	}
}

// A command carrying a value not normalised is refused by the FSM, on
// every node alike.
func TestListsRejectsUnnormalised(t *testing.T) {
	f := newTestFSM(t)
	bad := lists.Entry{List: lists.Block, Kind: lists.KindAddress, Value: "UPPER@Example.com"}
	if resp := apply(f, EncodeListsPut(bad)); resp == nil {
		t.Fatal("unnormalised entry accepted")
	}
	if es, _ := f.ListEntries(); len(es) != 0 {
		t.Fatalf("entries after a refused put: %v", es)
	}
}
