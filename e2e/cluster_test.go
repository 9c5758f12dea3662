package e2e

import (
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/wait"
)

// TestClusterForms: three nodes started at the same moment from empty data
// dirs form one cluster by themselves (gossip join, bootstrap_expect),
// and every node's API, the metrics and the CLI tell the same story.
func TestClusterForms(t *testing.T) {
	c := newTestCluster(t, 3, clusterGreylist(3*time.Second))
	leader := waitAgreed(t, c.nodes, 3, 30*time.Second)
	t.Logf("e2e: cluster formed %v after the three nodes were launched; leader %s", time.Since(c.launched).Round(time.Millisecond), leader.name)

	var names []string
	for _, n := range c.nodes {
		names = append(names, n.name)
	}
	// Members and status as every node sees them: the same three alive
	// voters with the addresses from their configs, one of them the
	// leader; the same term and leader; every node has applied what the
	// leader committed (followers learn the commit index with the next
	// append, so this is polled too).
	leaderRaft := c.cluster[slices.Index(c.nodes, leader)].raft
	wait.For(t, 20*time.Second, "every node to see the same three members and state", func() (bool, string) {
		ls, err := leader.clusterStatus()
		if err != nil {
			return false, err.Error()
		}
		for _, n := range c.nodes {
			ms, err := n.clusterMembers()
			if err != nil {
				return false, err.Error()
			}
			if problem := checkMembers(c, ms, leader.name); problem != "" {
				return false, fmt.Sprintf("%s sees: %s", n.name, problem)
			}
			s, err := n.clusterStatus()
			if err != nil {
				return false, err.Error()
			}
			if s.Node != n.name || s.BootstrapExpect != 3 || s.GossipAlive != 3 || s.Voters != 3 || s.Leader != leader.name ||
				s.LeaderAddr != leaderRaft || s.Term == 0 || s.Term != ls.Term || s.CommitIndex == 0 ||
				s.CommitIndex != ls.CommitIndex || s.AppliedIndex != ls.CommitIndex {
				return false, fmt.Sprintf("status of %s: %+v; want node %s, bootstrap_expect 3, gossip_alive 3, 3 voters, leader %s at %s, term %d, commit and applied index %d",
					n.name, s, n.name, leader.name, leaderRaft, ls.Term, ls.CommitIndex)
			}
		}
		return true, ""
	})
	for _, n := range c.nodes {
		wantState := "follower"
		if n == leader {
			wantState = "leader"
		}
		// The gauges are refreshed every second.
		n.waitMetric(10*time.Second, 1, "mxgate_raft_state", "state", wantState)
		n.waitMetric(10*time.Second, 1, "mxgate_raft_has_leader")
		n.waitMetric(10*time.Second, 3, "mxgate_raft_voters")
		n.waitMetric(10*time.Second, 3, "mxgate_gossip_members", "state", "alive")
	}

	// The CLI, as an operator runs it.
	out := runCLI(t, "cluster", "members", "-http", "http://"+c.nodes[2].http)
	t.Logf("e2e: mxgate cluster members:\n%s", out)
	rows := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 3 {
			rows[f[0]] = f
		}
	}
	for _, name := range names {
		f := rows[name]
		switch {
		case f == nil:
			t.Errorf("e2e: mxgate cluster members does not list %s", name)
		case f[1] != "alive":
			t.Errorf("e2e: mxgate cluster members: %s is %q, want alive", name, f[1])
		case name == leader.name && f[2] != "leader", name != leader.name && f[2] != "voter":
			t.Errorf("e2e: mxgate cluster members: %s has role %q (leader is %s)", name, f[2], leader.name)
		}
	}
	out = runCLI(t, "cluster", "status", "-http", "http://"+c.nodes[0].http)
	t.Logf("e2e: mxgate cluster status:\n%s", out)
	fields := map[string]string{}
	for line := range strings.SplitSeq(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	if !strings.HasPrefix(fields["leader"], leader.name+" (") || fields["voters"] != "3" || fields["node"] != c.nodes[0].name {
		t.Errorf("e2e: mxgate cluster status on %s: leader %q, voters %q, node %q; want leader %s, 3 voters", c.nodes[0].name,
			fields["leader"], fields["voters"], fields["node"], leader.name)
	}
}

// checkMembers returns what is wrong with a members list of the cluster c
// whose leader is leader, or "".
func checkMembers(c *testCluster, ms []clusterMember, leader string) string {
	if len(ms) != len(c.nodes) {
		return fmt.Sprintf("%d members: %+v", len(ms), ms)
	}
	leaders := 0
	for _, m := range ms {
		i := slices.IndexFunc(c.nodes, func(n *node) bool { return n.name == m.Name })
		if i < 0 {
			return fmt.Sprintf("unknown member %+v", m)
		}
		n, co := c.nodes[i], c.cluster[i]
		if m.Status != "alive" || !m.Voter || m.Gossip != co.gossip || m.Raft != co.raft || m.SMTP != n.inbound || m.HTTP != n.http || m.Version == "" {
			return fmt.Sprintf("member %+v; want alive voter gossip %s raft %s smtp %s http %s with a version", m, co.gossip, co.raft, n.inbound, n.http)
		}
		if m.Leader {
			leaders++
			if m.Name != leader {
				return fmt.Sprintf("%s marked leader, want %s", m.Name, leader)
			}
		}
	}
	if leaders != 1 {
		return fmt.Sprintf("%d leaders marked", leaders)
	}
	return ""
}

// TestClusterGreylistReplicated: a triplet greylisted through one node is
// known to another: an early retry there is still greylisted (early_retry,
// not new), and the retry after the delay passes.
func TestClusterGreylistReplicated(t *testing.T) {
	const delay = 3 * time.Second
	c := newTestCluster(t, 3, clusterGreylist(delay))
	leader := waitAgreed(t, c.nodes, 3, 30*time.Second)
	// A and C are followers: the write is forwarded to the leader (B),
	// and C reads its own replica.
	var followers []*node
	for _, n := range c.nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}
	a, b, cc := followers[0], leader, followers[1]
	t.Logf("e2e: leader %s; greylisting through %s, retrying through %s", leader.name, a.name, cc.name)
	const from, rcpt = "sender@example.org", "user@e2e.test"
	before := greylistCounts(t, cc)

	first := time.Now()
	conn, rep := rcptFrom(t, "127.0.0.1", a.inbound, from, rcpt)
	conn.close()
	if !rep.is("451 4.7.1") {
		t.Fatalf("e2e: first attempt on %s: got %q, want 451 4.7.1", a.name, rep)
	}
	// Reads are local: wait until C has applied what the leader had
	// committed when A answered (A answers 451 only after the commit).
	waitCaughtUp(t, leader, []*node{cc}, 10*time.Second)
	conn, rep = rcptFrom(t, "127.0.0.1", cc.inbound, from, rcpt)
	conn.close()
	early := time.Since(first)
	if !rep.is("451 4.7.1") {
		t.Fatalf("e2e: early retry on %s: got %q, want 451 4.7.1", cc.name, rep)
	}
	if early >= delay {
		t.Fatalf("e2e: the early retry came %v after the first attempt, not before the %v delay: the test machine is too slow for this check", early, delay)
	}
	if evs := cc.findEvents("event", "reject", "rcpt", rcpt); len(evs) != 1 || evs[0]["greylist"] != "early_retry" {
		t.Errorf("e2e: %s logged %v for the early retry, want one reject with greylist early_retry (the triplet known from %s)", cc.name, evs, a.name)
	}

	// Retry on C as an MTA would until it passes; it must not pass before
	// the delay (counted from the first attempt on A).
	var passedAfter time.Duration
	wait.For(t, 20*time.Second, "the retry on "+cc.name+" to pass", func() (bool, string) {
		conn, rep := rcptFrom(t, "127.0.0.1", cc.inbound, from, rcpt)
		defer conn.close()
		switch {
		case rep.is("250"):
			passedAfter = time.Since(first)
			if passedAfter < delay {
				t.Fatalf("e2e: passed on %s %v after the first attempt, before the %v delay", cc.name, passedAfter, delay)
			}
			if r := finishMessage(t, conn, "cluster-greylist-passed"); !r.is("250 2.0.0") {
				t.Fatalf("e2e: message after passing: got %q", r)
			}
			return true, ""
		case rep.is("451 4.7.1"):
			return false, "still greylisted"
		}
		t.Fatalf("e2e: retry on %s: got %q, want 451 4.7.1 or 250", cc.name, rep)
		return false, ""
	})
	t.Logf("e2e: greylisted on %s, early retry on %s after %v: 451, passed on %s %v after the first attempt (delay %v)",
		a.name, cc.name, early.Round(time.Millisecond), cc.name, passedAfter.Round(time.Millisecond), delay)
	got := diffCounts(before, greylistCounts(t, cc))
	if got["new"] != 0 || got["store_error"] != 0 || got["passed"] != 1 || got["early_retry"] < 1 {
		t.Errorf("e2e: greylist decisions on %s: %v; want passed 1, early_retry at least 1, no new and no store_error", cc.name, got)
	}
	// The pass is replicated too: B lets the triplet through at once.
	waitCaughtUp(t, leader, []*node{b}, 10*time.Second)
	conn, rep = rcptFrom(t, "127.0.0.1", b.inbound, from, rcpt)
	conn.close()
	if !rep.is("250") {
		t.Errorf("e2e: %s after the pass on %s: got %q, want 250", b.name, cc.name, rep)
	}
	wait.For(t, 20*time.Second, "the passed message delivered", func() (bool, string) {
		return c.be.Count() == 1, fmt.Sprintf("%d delivered", c.be.Count())
	})
}

// writeResult is one RCPT of the write load: a new triplet on one node.
type writeResult struct {
	n          *node
	rcpt       string
	rep        smtpReply
	err        error
	start, end time.Time
}

// TestClusterLeaderKilledUnderLoad: the leader is killed with SIGKILL
// while clients greylist new triplets on every node. A new leader is
// elected within seconds; the survivors answer every RCPT with 451 4.7.1
// or, while there is no leader, 250 (fail open), never anything else; no
// acknowledged write is lost (a 451 "new" is sent only after the triplet
// committed); the killed node, restarted on its data dir, catches up.
func TestClusterLeaderKilledUnderLoad(t *testing.T) {
	const delay = 2 * time.Second
	const from = "load@example.org"
	c := newTestCluster(t, 3, clusterGreylist(delay))
	leader := waitAgreed(t, c.nodes, 3, 30*time.Second)
	var survivors []*node
	for _, n := range c.nodes {
		if n != leader {
			survivors = append(survivors, n)
		}
	}

	var (
		mu      sync.Mutex
		results []writeResult
		killed  atomic.Bool
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	const workers = 6
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				n := c.nodes[(w+i)%len(c.nodes)]
				if n == leader && killed.Load() {
					continue
				}
				r := writeResult{n: n, rcpt: fmt.Sprintf("load%d-%d@e2e.test", w, i), start: time.Now()}
				r.rep, r.err = tryRcpt(n.inbound, from, r.rcpt)
				r.end = time.Now()
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		}()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()
	// greylisted counts the 451 replies from n that started after since.
	greylisted := func(n *node, since time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		count := 0
		for _, r := range results {
			if r.n == n && r.err == nil && r.rep.is("451 4.7.1") && r.start.After(since) {
				count++
			}
		}
		return count
	}
	wait.For(t, 30*time.Second, "writes greylisted on every node before the kill", func() (bool, string) {
		var seen []string
		ok := true
		for _, n := range c.nodes {
			g := greylisted(n, time.Time{})
			seen = append(seen, fmt.Sprintf("%s: %d", n.name, g))
			ok = ok && g >= 20
		}
		return ok, strings.Join(seen, ", ")
	})

	killAt := time.Now()
	killed.Store(true)
	leader.kill9()
	t.Logf("e2e: killed leader %s with SIGKILL under load", leader.name)
	var newLeader *node
	wait.For(t, 15*time.Second, "a new leader among the survivors", func() (bool, string) {
		l, seen := agreed(survivors, 3)
		newLeader = l
		return l != nil, seen
	})
	electedAt := time.Now()
	electedIn := electedAt.Sub(killAt)
	t.Logf("e2e: new leader %s elected %v after the kill", newLeader.name, electedIn.Round(time.Millisecond))
	if electedIn >= 15*time.Second {
		t.Errorf("e2e: new leader after %v, want under 15s", electedIn)
	}
	for _, n := range survivors {
		// The first leader, then the new one (and "none" between).
		wait.For(t, 5*time.Second, "mxgate_raft_leader_changes_total >= 2 on "+n.name, func() (bool, string) {
			v, _, err := n.metric("mxgate_raft_leader_changes_total")
			return err == nil && v >= 2, fmt.Sprintf("%v (%v)", v, err)
		})
	}
	wait.For(t, 30*time.Second, "writes greylisted on both survivors under the new leader", func() (bool, string) {
		a, b := greylisted(survivors[0], electedAt), greylisted(survivors[1], electedAt)
		return a >= 20 && b >= 20, fmt.Sprintf("%s: %d, %s: %d", survivors[0].name, a, survivors[1].name, b)
	})
	stopLoad()

	// Every reply of a survivor, and of the leader before the kill, is
	// 451 4.7.1 (the triplet committed) or 250 (failed open without a
	// leader); a 451 is an acknowledged write.
	var acked []writeResult
	failOpen := map[*node]int{}
	var slowest time.Duration
	bad := 0
	for _, r := range results {
		survivor := r.n != leader
		if survivor {
			slowest = max(slowest, r.end.Sub(r.start))
		}
		switch {
		case r.err == nil && r.rep.is("451 4.7.1"):
			acked = append(acked, r)
			continue
		case r.err == nil && r.rep.is("250"):
			failOpen[r.n]++
			continue
		case !survivor && !r.end.Before(killAt):
			continue // in flight on the node being killed
		}
		if bad++; bad <= 10 {
			t.Errorf("e2e: %s (survivor %v), RCPT %s at +%v: reply %q, error %v; want 451 4.7.1 or 250", r.n.name, survivor, r.rcpt,
				r.start.Sub(killAt).Round(time.Millisecond), r.rep, r.err)
		}
	}
	if bad > 0 {
		t.Fatalf("e2e: %d RCPTs of %d answered wrongly", bad, len(results))
	}
	for _, n := range c.nodes {
		var s451, s250, failed int
		var firstOpen, lastOpen time.Duration
		for _, r := range results {
			switch {
			case r.n != n:
			case r.err != nil:
				failed++
			case r.rep.is("451"):
				s451++
			case r.rep.is("250"):
				if s250++; s250 == 1 {
					firstOpen = r.start.Sub(killAt)
				}
				lastOpen = r.end.Sub(killAt)
			}
		}
		line := fmt.Sprintf("e2e: %s: %d RCPTs greylisted (acknowledged writes), %d failed open", n.name, s451, s250)
		if s250 > 0 {
			line += fmt.Sprintf(" (the first sent %v, the last answered %v, relative to the kill)", firstOpen.Round(time.Millisecond), lastOpen.Round(time.Millisecond))
		}
		if n == leader {
			line += fmt.Sprintf(", %d cut off by the kill", failed)
		}
		t.Log(line)
	}
	t.Logf("e2e: slowest RCPT on a survivor: %v", slowest.Round(time.Millisecond))
	if slowest > 5*time.Second {
		t.Errorf("e2e: a survivor took %v to answer a RCPT; a write without quorum should give up after 2s", slowest)
	}
	// A 250 for a new triplet is a store error, counted as such.
	for _, n := range survivors {
		if v := greylistCounts(t, n)["store_error"]; v != float64(failOpen[n]) {
			t.Errorf("e2e: %s answered 250 to %d new triplets but counted %v store errors", n.name, failOpen[n], v)
		}
	}

	// No acknowledged write is lost: once the survivors have applied all
	// that is committed, each greylisted triplet passes after the delay
	// on a survivor, as passed (known), never as new.
	waitCaughtUp(t, newLeader, survivors, 10*time.Second)
	before := map[*node]map[string]float64{}
	for _, n := range survivors {
		before[n] = greylistCounts(t, n)
	}
	verifyStart := time.Now()
	retryAll(t, acked, survivors, from, delay)
	var passed, news, storeErrs float64
	for _, n := range survivors {
		d := diffCounts(before[n], greylistCounts(t, n))
		passed += d["passed"]
		news += d["new"]
		storeErrs += d["store_error"]
	}
	if int(passed) != len(acked) || news != 0 || storeErrs != 0 {
		t.Errorf("e2e: retrying %d acknowledged triplets: %v passed, %v new, %v store errors; want all passed", len(acked), passed, news, storeErrs)
		for _, n := range survivors {
			for _, ev := range n.findEvents("event", "reject", "greylist", "new") {
				if ts, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(ev["time"])); ts.After(verifyStart) {
					t.Errorf("e2e: lost: %s did not know %v", n.name, ev["rcpt"])
				}
			}
		}
	}
	t.Logf("e2e: all %d acknowledged triplets passed on the survivors (%v)", len(acked), time.Since(verifyStart).Round(time.Millisecond))

	// The killed node restarts on its data dir and catches up.
	restartAt := time.Now()
	leader.start()
	cur := waitAgreed(t, c.nodes, 3, 30*time.Second)
	conn, rep := rcptFrom(t, "127.0.0.1", survivors[0].inbound, from, "after-restart@e2e.test")
	conn.close()
	if !rep.is("451 4.7.1") {
		t.Fatalf("e2e: new triplet after the restart on %s: got %q, want 451 4.7.1", survivors[0].name, rep)
	}
	commit := waitCaughtUp(t, cur, []*node{leader}, 20*time.Second)
	if s := leader.mustStatus(); s.CommitIndex < commit {
		t.Errorf("e2e: restarted %s: commit index %d, want at least the leader's %d", leader.name, s.CommitIndex, commit)
	}
	t.Logf("e2e: %s restarted and applied index %d (the leader's commit index after a new write) %v after the restart; leader %s",
		leader.name, commit, time.Since(restartAt).Round(time.Millisecond), cur.name)
	lb := greylistCounts(t, leader)
	// What it missed while down, and what was written after its restart,
	// answer the same through it.
	var missed []writeResult
	for _, r := range acked {
		if r.start.After(killAt) && len(missed) < 20 {
			missed = append(missed, r)
		}
	}
	missed = append(missed, writeResult{rcpt: "after-restart@e2e.test"})
	retryAll(t, missed, []*node{leader}, from, delay)
	if d := diffCounts(lb, greylistCounts(t, leader)); int(d["passed"]) != len(missed) || d["new"] != 0 || d["store_error"] != 0 {
		t.Errorf("e2e: retrying on restarted %s %d triplets written while it was down or after: %v; want all passed", leader.name, len(missed), d)
	}
}

// retryAll retries each triplet (from, r.rcpt) on the nodes in turn, a few
// at a time, until it passes: 451 4.7.1 is accepted while within the
// delay, anything else fails the test.
func retryAll(t *testing.T, triplets []writeResult, nodes []*node, from string, delay time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(triplets))
	sem := make(chan struct{}, 4)
	for i, r := range triplets {
		n := nodes[i%len(nodes)]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var last smtpReply
			err := wait.Until(delay+20*time.Second, func() (bool, string) {
				rep, err := tryRcpt(n.inbound, from, r.rcpt)
				switch {
				case err != nil:
					errs <- fmt.Errorf("retry of %s on %s: %v", r.rcpt, n.name, err)
					return true, ""
				case rep.is("250"):
					return true, ""
				case rep.is("451 4.7.1"):
					last = rep
					return false, rep.String()
				}
				errs <- fmt.Errorf("retry of %s on %s: got %q, want 250 or 451 4.7.1", r.rcpt, n.name, rep)
				return true, ""
			})
			if err != nil {
				errs <- fmt.Errorf("retry of %s on %s never passed (last %q): %v", r.rcpt, n.name, last, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	count := 0
	for err := range errs {
		if count++; count <= 10 {
			t.Errorf("e2e: %v", err)
		}
	}
	if count > 0 {
		t.Fatalf("e2e: %d of %d retries failed", count, len(triplets))
	}
}

// TestClusterSnapshotOnJoin: a fourth node joins a cluster whose Raft log
// has been compacted (snapshots every few dozen entries through
// MXGATE_RAFT_SNAPSHOT_THRESHOLD): it is sent a snapshot, becomes the
// fourth voter, catches up and answers for triplets written before it
// existed.
func TestClusterSnapshotOnJoin(t *testing.T) {
	const delay = 2 * time.Second
	const threshold = 40
	const from = "snap@example.org"
	// The log store answers "not found" below its first index, so once
	// compacted the leader can only catch a newcomer up with a snapshot.
	c := newTestCluster(t, 3, clusterGreylist(delay),
		fmt.Sprintf("MXGATE_RAFT_SNAPSHOT_THRESHOLD=%d", threshold), "MXGATE_RAFT_SNAPSHOT_INTERVAL=100ms")
	leader := waitAgreed(t, c.nodes, 3, 30*time.Second)
	var before []string
	for i, n := range c.nodes {
		before = append(before, greylistMany(t, n, from, fmt.Sprintf("before%d", i), 100)...)
	}
	wait.For(t, 30*time.Second, "every node to snapshot and the leader to compact its log", func() (bool, string) {
		var seen []string
		ok := true
		for _, n := range c.nodes {
			s, err := n.clusterStatus()
			if err != nil {
				return false, err.Error()
			}
			seen = append(seen, fmt.Sprintf("%s last_snapshot_index=%d last_log_index=%d", n.name, s.LastSnapshotIndex, s.LastLogIndex))
			ok = ok && s.LastSnapshotIndex > 0
		}
		compacted := leader.logContains("compacting logs")
		seen = append(seen, fmt.Sprintf("leader %s logged compaction: %v", leader.name, compacted))
		return ok && compacted, strings.Join(seen, "; ")
	})
	snap := leader.mustStatus().LastSnapshotIndex
	t.Logf("e2e: %d triplets written; leader %s snapshot at index %d and compacted its log (MXGATE_RAFT_SNAPSHOT_THRESHOLD=%d)",
		len(before), leader.name, snap, threshold)

	joinAt := time.Now()
	n4 := c.addNode()
	cur := waitAgreed(t, c.nodes, 4, 30*time.Second)
	t.Logf("e2e: %s joined as the fourth voter %v after its start; leader %s", n4.name, time.Since(joinAt).Round(time.Millisecond), cur.name)
	wait.For(t, 10*time.Second, n4.name+" to install the leader's snapshot", func() (bool, string) {
		// Raft's own log line. Without it the new node replayed the log:
		// the leader still served the entries it had compacted.
		return n4.logContains("Installed remote snapshot"), fmt.Sprintf("no \"Installed remote snapshot\" in %s's log", n4.name)
	})
	var added float64
	for _, n := range c.nodes[:3] {
		v, _, err := n.metric("mxgate_cluster_voter_changes_total", "action", "added")
		if err != nil {
			t.Fatal(err)
		}
		added += v
	}
	if added < 1 {
		t.Errorf("e2e: mxgate_cluster_voter_changes_total{action=\"added\"} is %v over the first three nodes, want at least 1 (%s)", added, n4.name)
	}
	wait.For(t, 20*time.Second, "every node to list the four members alike", func() (bool, string) {
		for _, n := range c.nodes {
			ms, err := n.clusterMembers()
			if err != nil {
				return false, err.Error()
			}
			if p := checkMembers(c, ms, cur.name); p != "" {
				return false, fmt.Sprintf("%s sees: %s", n.name, p)
			}
		}
		return true, ""
	})

	// A write after the join reaches the new node; it answers as the
	// others do, for that triplet and for those from before it existed
	// (in the snapshot, not in the log).
	after := greylistMany(t, c.nodes[0], from, "after", 1)[0]
	commit := waitCaughtUp(t, cur, []*node{n4}, 20*time.Second)
	s4 := n4.mustStatus()
	if s4.LastSnapshotIndex == 0 || s4.AppliedIndex < snap || s4.CommitIndex < commit {
		t.Errorf("e2e: %s after joining: %+v; want a snapshot, applied index at least %d (the leader's snapshot) and commit index at least %d",
			n4.name, s4, snap, commit)
	}
	t.Logf("e2e: %s: last snapshot index %d, applied %d, commit %d (leader's commit %d)", n4.name, s4.LastSnapshotIndex, s4.AppliedIndex, s4.CommitIndex, commit)
	b4 := greylistCounts(t, n4)
	conn, rep := rcptFrom(t, "127.0.0.1", n4.inbound, from, after)
	conn.close()
	if !rep.is("451 4.7.1") {
		t.Errorf("e2e: early retry on %s of the triplet written after it joined: got %q, want 451 4.7.1", n4.name, rep)
	}
	if evs := n4.findEvents("event", "reject", "rcpt", after); len(evs) != 1 || evs[0]["greylist"] != "early_retry" {
		t.Errorf("e2e: %s logged %v for the early retry, want greylist early_retry", n4.name, evs)
	}
	sample := []writeResult{}
	for _, rcpt := range append(before[:5:5], before[len(before)-1], after) {
		sample = append(sample, writeResult{rcpt: rcpt})
	}
	retryAll(t, sample, []*node{n4}, from, delay)
	if d := diffCounts(b4, greylistCounts(t, n4)); int(d["passed"]) != len(sample) || d["new"] != 0 || d["store_error"] != 0 {
		t.Errorf("e2e: greylist decisions on %s for %d known triplets: %v; want all passed, none new", n4.name, len(sample), d)
	}
}

// TestClusterNoQuorumFailsOpen: with two of three nodes down the survivor
// has no quorum; it keeps taking mail: greylisting fails open (250 after
// the write times out, counted as store_error), the message is accepted
// and delivered, and /readyz stays 200.
func TestClusterNoQuorumFailsOpen(t *testing.T) {
	c := newTestCluster(t, 3, clusterGreylist(2*time.Second))
	waitAgreed(t, c.nodes, 3, 30*time.Second)
	survivor := c.nodes[0]

	// /readyz is watched from before the other nodes go until the end.
	var notReady []string
	var polls int
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		client := &http.Client{Timeout: 5 * time.Second}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			polls++
			resp, err := client.Get("http://" + survivor.http + "/readyz")
			if err != nil {
				notReady = append(notReady, err.Error())
			} else {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					notReady = append(notReady, resp.Status)
				}
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	stopWatch := sync.OnceFunc(func() { close(stop); <-watched })
	defer stopWatch()

	c.nodes[1].stop()  // leaves gossip
	c.nodes[2].kill9() // just gone
	wait.For(t, 20*time.Second, survivor.name+" to know it has no leader", func() (bool, string) {
		s, err := survivor.clusterStatus()
		if err != nil {
			return false, err.Error()
		}
		return s.Leader == "" && s.State != "leader", fmt.Sprintf("%+v", s)
	})
	survivor.waitMetric(10*time.Second, 0, "mxgate_raft_has_leader")

	before := greylistCounts(t, survivor)
	applyErrs, _, err := survivor.metric("mxgate_raft_apply_errors_total")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	conn, rep := rcptFrom(t, "127.0.0.1", survivor.inbound, "noquorum@example.org", "user@e2e.test")
	took := time.Since(start)
	if !rep.is("250") {
		conn.close()
		t.Fatalf("e2e: RCPT of a new triplet without quorum: got %q after %v, want 250 (greylisting fails open)", rep, took)
	}
	t.Logf("e2e: RCPT without quorum answered 250 after %v", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("e2e: RCPT without quorum took %v; the replicated write should give up after 2s", took)
	}
	r := finishMessage(t, conn, "cluster-no-quorum")
	conn.close()
	if _, ok := queueIDOf(r); !ok {
		t.Fatalf("e2e: end of DATA without quorum: got %q, want 250 2.0.0 with a queue id", r)
	}
	wait.For(t, 20*time.Second, "the message delivered to the backend", func() (bool, string) {
		return c.be.Count() == 1, fmt.Sprintf("%d delivered", c.be.Count())
	})
	if d := c.be.Deliveries()[0]; len(d.Rcpts) != 1 || d.Rcpts[0] != "user@e2e.test" || !strings.Contains(string(d.Data), "Subject: cluster-no-quorum") {
		t.Errorf("e2e: delivered from %s to %v, want the cluster-no-quorum message to user@e2e.test", d.From, d.Rcpts)
	}
	if d := diffCounts(before, greylistCounts(t, survivor)); d["store_error"] != 1 || d["new"] != 0 {
		t.Errorf("e2e: greylist decisions on %s without quorum: %v; want store_error 1 and no new", survivor.name, d)
	}
	if evs := survivor.findEvents("event", "greylist_fail_open", "rcpt", "user@e2e.test"); len(evs) != 1 || evs[0]["greylist"] != "store_error" {
		t.Errorf("e2e: greylist_fail_open log lines on %s: %v, want one with greylist=store_error", survivor.name, evs)
	}
	if v, _, err := survivor.metric("mxgate_raft_apply_errors_total"); err != nil || v <= applyErrs {
		t.Errorf("e2e: mxgate_raft_apply_errors_total on %s: %v (%v), want more than %v after a write without quorum", survivor.name, v, err, applyErrs)
	}
	survivor.waitMetric(5*time.Second, 0, "mxgate_raft_has_leader")
	stopWatch()
	if len(notReady) > 0 || polls < 10 {
		t.Errorf("e2e: /readyz on %s answered other than 200 %d times of %d: %v", survivor.name, len(notReady), polls, notReady)
	}
}

// voterCount is the number of voters n reports, or -1 when it does not
// answer.
func voterCount(n *node) int {
	s, err := n.clusterStatus()
	if err != nil {
		return -1
	}
	return s.Voters
}

// TestClusterRemovesDeadVoter: a voter killed for good is removed by the
// leader after cluster.remove_dead_after, and added back when it returns
// with its data dir.
func TestClusterRemovesDeadVoter(t *testing.T) {
	c := newTestClusterDeadAfter(t, 3, clusterGreylist(10*time.Second), 2*time.Second)
	leader := waitAgreed(t, c.nodes, 3, 30*time.Second)
	var victim *node
	var rest []*node
	for _, n := range c.nodes {
		if n != leader && victim == nil {
			victim = n
		} else {
			rest = append(rest, n)
		}
	}
	victim.kill9()
	wait.For(t, 30*time.Second, "the dead voter removed", func() (bool, string) {
		for _, n := range rest {
			if v := voterCount(n); v != 2 {
				return false, fmt.Sprintf("%s reports %d voters", n.name, v)
			}
		}
		return true, ""
	})
	if v, _, err := leader.metric("mxgate_cluster_voter_changes_total", "action", "removed_dead"); err != nil || v != 1 {
		t.Errorf("e2e: voter changes removed_dead on %s: %v (%v), want 1", leader.name, v, err)
	}
	if evs := leader.findEvents("event", "cluster_voter", "action", "removed_dead", "member", victim.name); len(evs) != 1 {
		t.Errorf("e2e: %s logged %d removed_dead lines for %s, want 1", leader.name, len(evs), victim.name)
	}

	// Back with its data dir: alive in gossip again, so the leader adds it.
	victim.start()
	waitAgreed(t, c.nodes, 3, 30*time.Second)
	if v, _, err := leader.metric("mxgate_cluster_voter_changes_total", "action", "added"); err != nil || v < 1 {
		t.Errorf("e2e: voter changes added on %s: %v (%v), want at least 1", leader.name, v, err)
	}
}

// TestClusterRemoveByOperator: `mxgate cluster remove` refuses a node that
// is alive, and removes a stopped one through any node's HTTP API.
func TestClusterRemoveByOperator(t *testing.T) {
	c := newTestCluster(t, 3, clusterGreylist(10*time.Second))
	leader := waitAgreed(t, c.nodes, 3, 30*time.Second)
	var followers []*node
	for _, n := range c.nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}
	asker, victim := followers[0], followers[1]

	cmd := exec.Command(mxgateBin, "cluster", "remove", "-http", "http://"+asker.http, victim.name)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "alive in gossip") {
		t.Fatalf("e2e: removing the running node %s: err %v, output %q; want a refusal saying it is alive", victim.name, err, out)
	}
	if v := voterCount(leader); v != 3 {
		t.Fatalf("e2e: %d voters after a refused removal", v)
	}

	victim.stop()
	wait.For(t, 20*time.Second, victim.name+" gone from gossip", func() (bool, string) {
		ms, err := asker.clusterMembers()
		if err != nil {
			return false, err.Error()
		}
		for _, m := range ms {
			if m.Name == victim.name {
				return m.Status == "left" || m.Status == "dead", "status " + m.Status
			}
		}
		return false, "not listed"
	})
	// Through a follower: the request is forwarded to the leader.
	out2 := runCLI(t, "cluster", "remove", "-http", "http://"+asker.http, victim.name)
	if !strings.Contains(out2, "removed "+victim.name) {
		t.Errorf("e2e: mxgate cluster remove said %q", out2)
	}
	wait.For(t, 10*time.Second, "two voters everywhere", func() (bool, string) {
		for _, n := range []*node{leader, asker} {
			if v := voterCount(n); v != 2 {
				return false, fmt.Sprintf("%s reports %d voters", n.name, v)
			}
		}
		return true, ""
	})
	// Counted and logged where the operator asked.
	if v, _, err := asker.metric("mxgate_cluster_voter_changes_total", "action", "removed_by_operator"); err != nil || v != 1 {
		t.Errorf("e2e: voter changes removed_by_operator on %s: %v (%v), want 1", asker.name, v, err)
	}
	if evs := asker.findEvents("event", "admin", "member", victim.name); len(evs) != 1 {
		t.Errorf("e2e: %s logged %d admin lines for removing %s, want 1", asker.name, len(evs), victim.name)
	}
	ms, err := asker.clusterMembers()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Name == victim.name && m.Voter {
			t.Errorf("e2e: %s is still listed as a voter: %+v", victim.name, m)
		}
	}
}
