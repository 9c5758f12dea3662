package cluster

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mxgate/mxgate/greylist"
	"github.com/mxgate/mxgate/internal/testport"
)

// freeAddr returns a loopback address that was free a moment ago. The node
// binds it itself because the address must be known before bootstrap and
// stay the same across a restart.
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := testport.Addr(true)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func fastRaft(c *raft.Config) {
	c.HeartbeatTimeout = 200 * time.Millisecond
	c.ElectionTimeout = 200 * time.Millisecond
	c.LeaderLeaseTimeout = 100 * time.Millisecond
	c.CommitTimeout = 10 * time.Millisecond
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

type testCluster struct {
	t     *testing.T
	cfgs  []NodeConfig
	nodes []*Node // nil when stopped
}

func newTestCluster(t *testing.T, size int, tune ...func(*raft.Config)) *testCluster {
	t.Helper()
	configure := func(c *raft.Config) {
		fastRaft(c)
		for _, f := range tune {
			f(c)
		}
	}
	tc := &testCluster{t: t, nodes: make([]*Node, size)}
	var peers []raft.Server
	for i := range size {
		cfg := NodeConfig{
			ID:            fmt.Sprintf("node%d", i),
			Dir:           filepath.Join(t.TempDir(), fmt.Sprintf("node%d", i)),
			RaftAddr:      freeAddr(t),
			ConfigureRaft: configure,
		}
		peers = append(peers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(cfg.ID), Address: raft.ServerAddress(cfg.RaftAddr)})
		tc.cfgs = append(tc.cfgs, cfg)
	}
	tc.cfgs[0].Bootstrap = true
	tc.cfgs[0].Peers = peers
	for i := range size {
		tc.start(i)
	}
	t.Cleanup(func() {
		for i := range tc.nodes {
			tc.stop(i)
		}
	})
	return tc
}

func (tc *testCluster) start(i int) {
	tc.t.Helper()
	n, err := StartNode(tc.cfgs[i])
	if err != nil {
		tc.t.Fatalf("starting %s: %v", tc.cfgs[i].ID, err)
	}
	tc.nodes[i] = n
}

func (tc *testCluster) stop(i int) {
	tc.t.Helper()
	if tc.nodes[i] == nil {
		return
	}
	if err := tc.nodes[i].Shutdown(); err != nil {
		tc.t.Errorf("shutting down %s: %v", tc.cfgs[i].ID, err)
	}
	tc.nodes[i] = nil
}

func (tc *testCluster) running() []int {
	var out []int
	for i, n := range tc.nodes {
		if n != nil {
			out = append(out, i)
		}
	}
	return out
}

// waitLeader waits until exactly one running node is leader and every
// running node names it, and returns its index.
func (tc *testCluster) waitLeader() int {
	tc.t.Helper()
	leader := -1
	waitFor(tc.t, 10*time.Second, "one leader known to all running nodes", func() bool {
		leader = -1
		for _, i := range tc.running() {
			if tc.nodes[i].State() == raft.Leader {
				if leader >= 0 {
					return false
				}
				leader = i
			}
		}
		if leader < 0 {
			return false
		}
		for _, i := range tc.running() {
			if id, _ := tc.nodes[i].Leader(); id != tc.cfgs[leader].ID {
				return false
			}
		}
		return true
	})
	return leader
}

func (tc *testCluster) follower(leader int) int {
	for _, i := range tc.running() {
		if i != leader {
			return i
		}
	}
	tc.t.Fatal("no running follower")
	return -1
}

func (tc *testCluster) waitTriplet(key string, want greylist.Triplet) {
	tc.t.Helper()
	for _, i := range tc.running() {
		s := NewGreylistStore(tc.nodes[i])
		waitFor(tc.t, 10*time.Second, fmt.Sprintf("triplet %q on %s", key, tc.cfgs[i].ID), func() bool {
			got, ok, err := s.GetTriplet(context.Background(), key)
			if err != nil {
				tc.t.Fatalf("reading on %s: %v", tc.cfgs[i].ID, err)
			}
			return ok && got.FirstSeen.Equal(want.FirstSeen) && got.ExpiresAt.Equal(want.ExpiresAt)
		})
	}
}

func putTriplet(t *testing.T, n *Node, key string, tr greylist.Triplet) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := NewGreylistStore(n).PutTriplet(ctx, key, tr); err != nil {
		t.Fatalf("put %q through %s: %v", key, n.ID(), err)
	}
}

func TestNodeClusterLifecycle(t *testing.T) {
	tc := newTestCluster(t, 3)

	// One leader, elected without any step besides the bootstrap.
	leader := tc.waitLeader()

	// A write through a follower is forwarded and readable everywhere.
	tr1 := triplet(t0.Add(time.Hour))
	putTriplet(t, tc.nodes[tc.follower(leader)], "k1", tr1)
	tc.waitTriplet("k1", tr1)

	// The leader goes: a new one is elected and writes go on through
	// both survivors.
	stopped := leader
	tc.stop(stopped)
	leader = tc.waitLeader()
	if leader == stopped {
		t.Fatal("stopped node is leader")
	}
	tr2 := triplet(t0.Add(2 * time.Hour))
	putTriplet(t, tc.nodes[tc.follower(leader)], "k2", tr2)
	tr3 := triplet(t0.Add(3 * time.Hour))
	putTriplet(t, tc.nodes[leader], "k3", tr3)
	tc.waitTriplet("k2", tr2)
	tc.waitTriplet("k3", tr3)

	// The stopped node restarts from its directory as the same voter and
	// catches up with what was written while it was down.
	tc.start(stopped)
	tc.waitTriplet("k1", tr1)
	tc.waitTriplet("k2", tr2)
	tc.waitTriplet("k3", tr3)
	tc.waitLeader()
	cfg := tc.nodes[stopped].raft.GetConfiguration()
	if err := cfg.Error(); err != nil {
		t.Fatal(err)
	}
	if got := len(cfg.Configuration().Servers); got != 3 {
		t.Fatalf("configuration has %d servers after restart, want 3", got)
	}
	tr4 := triplet(t0.Add(4 * time.Hour))
	putTriplet(t, tc.nodes[stopped], "k4", tr4)
	tc.waitTriplet("k4", tr4)

	// Two of three stop: a write fails within its deadline (the greylist
	// then fails open), on whichever node survives.
	leader = tc.waitLeader()
	survivor := tc.follower(leader)
	for _, i := range tc.running() {
		if i != survivor {
			tc.stop(i)
		}
	}
	const budget = 1500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	start := time.Now()
	err := NewGreylistStore(tc.nodes[survivor]).PutTriplet(ctx, "k5", triplet(t0))
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("write without quorum succeeded")
	}
	if elapsed > budget+time.Second {
		t.Fatalf("write without quorum took %v, deadline was %v", elapsed, budget)
	}
	t.Logf("write without quorum: %v after %v", err, elapsed)
	// Reads still work locally.
	if _, ok, err := NewGreylistStore(tc.nodes[survivor]).GetTriplet(context.Background(), "k4"); err != nil || !ok {
		t.Fatalf("local read without quorum: ok=%v err=%v", ok, err)
	}
}

func TestNodeNoQuorumFromLeaderSide(t *testing.T) {
	// The survivor was leader: it must step down and the write fail by
	// the deadline rather than hang on an uncommittable entry.
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader()
	for _, i := range tc.running() {
		if i != leader {
			tc.stop(i)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := tc.nodes[leader].Apply(ctx, EncodePutTriplet("k", triplet(t0)))
	if err == nil {
		t.Fatal("write without quorum succeeded")
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("took %v", elapsed)
	}
}

func TestNodeForwardResponsesAndRejections(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader()
	f := tc.nodes[tc.follower(leader)]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// An invalid command is rejected, not retried until the deadline.
	start := time.Now()
	_, err := f.Apply(ctx, EncodePutTriplet("", triplet(t0)))
	if !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("empty key through follower: %v, want ErrInvalidCommand", err)
	}
	if _, err := tc.nodes[leader].Apply(ctx, EncodePutTriplet("", triplet(t0))); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("empty key on leader: %v, want ErrInvalidCommand", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("rejection took too long: retried?")
	}

	// A typed response travels back through forwarding.
	putTriplet(t, f, "old", triplet(t0))
	resp, err := f.Apply(ctx, EncodeExpire(t0.Add(time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := resp.(ExpireResult); !ok || r["triplets"] != 1 {
		t.Fatalf("expire through follower: %#v, want ExpireResult with 1 triplet", resp)
	}

	// A command over MaxEntrySize is chunked by the leader and applied
	// once on every node.
	tr := triplet(t0.Add(time.Hour))
	if _, err := f.Apply(ctx, padTriplet("big", tr, 3*MaxEntrySize/2)); err != nil {
		t.Fatal(err)
	}
	tc.waitTriplet("big", tr)
}

func TestNodeSnapshotAndNewVoter(t *testing.T) {
	// Keep only a few entries behind a snapshot.
	tc := newTestCluster(t, 3, func(c *raft.Config) { c.TrailingLogs = 2 })
	leader := tc.waitLeader()
	for i := range 20 {
		putTriplet(t, tc.nodes[leader], fmt.Sprintf("k%d", i), triplet(t0.Add(time.Hour)))
	}
	// Snapshot and compact the log on every node, so a newcomer can only
	// catch up from a snapshot.
	for _, i := range tc.running() {
		if err := tc.nodes[i].raft.Snapshot().Error(); err != nil {
			t.Fatalf("snapshot on %d: %v", i, err)
		}
	}

	cfg := NodeConfig{ID: "node3", Dir: filepath.Join(t.TempDir(), "node3"), RaftAddr: freeAddr(t), ConfigureRaft: fastRaft}
	n, err := StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tc.cfgs = append(tc.cfgs, cfg)
	tc.nodes = append(tc.nodes, n)
	if err := tc.nodes[tc.follower(leader)].AddVoter(cfg.ID, n.Addr()); err == nil {
		t.Fatal("AddVoter on a follower succeeded")
	}
	if err := tc.nodes[leader].AddVoter(cfg.ID, n.Addr()); err != nil {
		t.Fatal(err)
	}
	tc.waitTriplet("k19", triplet(t0.Add(time.Hour)))
	waitFor(t, 10*time.Second, "newcomer restored a snapshot", func() bool {
		return n.raft.Stats()["last_snapshot_index"] != "0"
	})
	if id, _ := n.Leader(); id != tc.cfgs[leader].ID || n.ID() != "node3" {
		t.Fatalf("newcomer %s sees leader %q", n.ID(), id)
	}

	if err := tc.nodes[leader].RemoveServer(cfg.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "node3 removed", func() bool {
		f := tc.nodes[leader].raft.GetConfiguration()
		return f.Error() == nil && len(f.Configuration().Servers) == 3
	})
}

func TestNodeNoAcknowledgedWriteLostOnFailover(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader()

	type ack struct{ key string }
	acks := make(chan ack, 10000)
	stopWriters := make(chan struct{})
	done := make(chan struct{})
	writers := 0
	for _, i := range tc.running() {
		for w := range 2 {
			writers++
			s := NewGreylistStore(tc.nodes[i])
			go func() {
				defer func() { done <- struct{}{} }()
				for seq := 0; ; seq++ {
					select {
					case <-stopWriters:
						return
					default:
					}
					key := fmt.Sprintf("n%d-w%d-%d", i, w, seq)
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					err := s.PutTriplet(ctx, key, triplet(t0.Add(time.Hour)))
					cancel()
					if errors.Is(err, ErrNodeShutdown) {
						return
					}
					if err == nil {
						acks <- ack{key}
					}
				}
			}()
		}
	}

	count := func() int { return len(acks) }
	waitFor(t, 10*time.Second, "writes before failover", func() bool { return count() >= 50 })
	tc.stop(leader)
	before := count()
	tc.waitLeader()
	waitFor(t, 10*time.Second, "writes after failover", func() bool { return count() >= before+50 })
	close(stopWriters)
	for range writers {
		<-done
	}
	close(acks)

	n := 0
	for a := range acks {
		n++
		for _, i := range tc.running() {
			s := NewGreylistStore(tc.nodes[i])
			waitFor(t, 5*time.Second, fmt.Sprintf("acknowledged %s on %d", a.key, i), func() bool {
				_, ok, err := s.GetTriplet(context.Background(), a.key)
				return err == nil && ok
			})
		}
	}
	t.Logf("%d acknowledged writes, all present on the survivors", n)
}

func TestGreylistStoreFailsFastWithoutQuorum(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader()
	survivor := tc.follower(leader)
	for _, i := range tc.running() {
		if i != survivor {
			tc.stop(i)
		}
	}
	store := NewGreylistStore(tc.nodes[survivor])
	store.WriteTimeout = time.Minute
	// While an election may still succeed, a write waits for a leader; once
	// the node has been leaderless longer than noLeaderFastFail, writes fail
	// at once with ErrNoLeader instead of waiting out WriteTimeout. The
	// context bounds the test, and must not be what ends the write.
	waitFor(t, 2*noLeaderFastFail+5*time.Second, "fast failure", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), noLeaderFastFail)
		defer cancel()
		err := store.PutTriplet(ctx, "k", triplet(t0))
		if err == nil {
			t.Fatal("write without quorum succeeded")
		}
		return errors.Is(err, ErrNoLeader) && ctx.Err() == nil
	})
	// Reads still come from the local copy.
	if _, _, err := store.GetTriplet(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
}

func TestForwardReusesConnections(t *testing.T) {
	tc := newTestCluster(t, 3)
	leader := tc.waitLeader()
	f := tc.nodes[tc.follower(leader)]
	for i := range 20 {
		putTriplet(t, f, fmt.Sprintf("seq%d", i), triplet(t0.Add(time.Hour)))
	}
	// Sequential writes from one follower share one pooled connection:
	// the leader serves exactly one forwarding connection.
	lm := tc.nodes[leader].mux
	lm.mu.Lock()
	open := len(lm.open)
	lm.mu.Unlock()
	if open != 1 {
		t.Fatalf("leader serves %d forwarding connections after 20 sequential writes from one follower, want 1", open)
	}
}
