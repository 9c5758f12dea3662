package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

// quarantineClusterYAML is appended to every node's config: GTUBE scores
// 9, over spam.quarantine (8) and under spam.reject (15).
const quarantineClusterYAML = "spam: {scores: {GTUBE: 9}}\n"

// newQuarantineCluster is newTestCluster (no greylisting) with
// quarantineClusterYAML in each node's config, written before the nodes
// start.
func newQuarantineCluster(t *testing.T, size int, env ...string) *testCluster {
	t.Helper()
	c := &testCluster{t: t, tlsDir: t.TempDir() + "/tls", env: env, be: smtptest.Start(t)}
	names := make([]string, size)
	gossips := make([]string, size)
	for i := range names {
		names[i] = fmt.Sprintf("mx%d", i+1)
		gossips[i] = gossipAddr(t)
	}
	tlsInit(t, c.tlsDir, names...)
	for i, name := range names {
		var join []string
		for j, g := range gossips {
			if j != i {
				join = append(join, g)
			}
		}
		n := c.newNode(name, &clusterOptions{gossip: gossips[i], raft: freeAddr(t), join: join,
			bootstrapExpect: size, tlsDir: c.tlsDir, removeDeadAfter: time.Hour})
		appendConfig(t, n, quarantineClusterYAML)
	}
	c.launched = time.Now()
	for _, n := range c.nodes {
		n.launch()
	}
	for _, n := range c.nodes {
		n.waitReady(30 * time.Second)
	}
	return c
}

func appendConfig(t *testing.T, n *node, yaml string) {
	t.Helper()
	f, err := os.OpenFile(n.configPath, os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		_, err = f.WriteString(yaml)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatalf("e2e: config of %s: %v", n.name, err)
	}
}

// quarantineSpam sends GTUBE with Message-ID <mid@client.e2e.test> through
// n and returns the reply.
func quarantineSpam(t *testing.T, n *node, mid, subject string) smtpReply {
	t.Helper()
	c, _ := dialHello(t, n.inbound)
	defer c.close()
	msg := "From: offers@spam.e2e-quarantine.test\r\nTo: user@e2e.test\r\nSubject: " + subject +
		"\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <" + mid + "@client.e2e.test>\r\n\r\n" + gtube + "\r\n"
	rep, err := c.sendMessage("offers@spam.e2e-quarantine.test", []string{"user@e2e.test"}, []byte(msg))
	if err != nil && rep.code == 0 {
		t.Fatalf("e2e: send %s through %s: %v", mid, n.name, err)
	}
	return rep
}

// mustQuarantine is quarantineSpam that wants 250 and returns the id.
func mustQuarantine(t *testing.T, n *node, mid, subject string) string {
	t.Helper()
	rep := quarantineSpam(t, n, mid, subject)
	id, ok := queueIDOf(rep)
	if !ok {
		t.Fatalf("e2e: GTUBE through %s: %q, want 250 2.0.0 with the quarantine id", n.name, rep)
	}
	return id
}

// sendClean sends a clean message through n and waits for its delivery:
// whatever n's queue held before has been tried by then.
func sendClean(t *testing.T, c *testCluster, n *node, mid string) {
	t.Helper()
	conn, _ := dialHello(t, n.inbound)
	defer conn.close()
	rep, err := conn.sendMessage("friend@example.org", []string{"user@e2e.test"}, []byte("From: friend@example.org\r\nSubject: hello\r\n"+
		"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <"+mid+"@client.e2e.test>\r\n\r\nhello\r\n"))
	if !rep.is("250") {
		t.Fatalf("e2e: clean message through %s: %q %v", n.name, rep, err)
	}
	waitDelivery(t, c.be, "<"+mid+"@client.e2e.test>")
}

// deliveriesOf counts a Message-ID at the backend.
func deliveriesOf(be *smtptest.Server, mid string) int {
	k := 0
	for _, d := range be.Deliveries() {
		if smtptest.HeaderValue(d.Data, "Message-ID") == "<"+mid+"@client.e2e.test>" {
			k++
		}
	}
	return k
}

// quarantineLs is `mxgate quarantine ls -http` on n, with args.
func quarantineLs(t *testing.T, n *node, args ...string) string {
	t.Helper()
	return runCLI(t, append([]string{"quarantine", "ls", "-http", "http://" + n.http}, args...)...)
}

// lsState returns the state `ls` shows for id on n, "" when not listed.
func lsState(t *testing.T, n *node, id string) string {
	t.Helper()
	for _, line := range strings.Split(quarantineLs(t, n), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[0] == id {
			return f[3]
		}
	}
	return ""
}

// TestQuarantineCluster: on three real nodes, spam quarantined through one
// node is listed by the others; released from two nodes at once, it is
// delivered exactly once. The node that quarantined is then killed with
// -9 and its data dir removed: the survivors still list and release its
// entries, and the node, back under the same name with an empty data dir
// after the log was compacted, gets them by snapshot, lists them and
// releases one.
func TestQuarantineCluster(t *testing.T) {
	const threshold = 32
	c := newQuarantineCluster(t, 3, fmt.Sprintf("MXGATE_RAFT_SNAPSHOT_THRESHOLD=%d", threshold), "MXGATE_RAFT_SNAPSHOT_INTERVAL=100ms")
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	leader := waitAgreed(t, c.nodes, 3, 30*time.Second)

	id1 := mustQuarantine(t, a, "qc1", "offer one")
	// Acknowledged with 250, so committed: every node lists it once it
	// has applied the leader's commit index.
	waitCaughtUp(t, leader, c.nodes, 20*time.Second)
	for _, n := range []*node{b, cc} {
		ls := quarantineLs(t, n, "-recipient", "user@e2e.test")
		if !strings.Contains(ls, id1) || !strings.Contains(ls, "held") || !strings.Contains(ls, "offer one") {
			t.Fatalf("e2e: quarantine ls -http %s after quarantining through %s: %q", n.name, a.name, ls)
		}
	}
	if k := deliveriesOf(c.be, "qc1"); k != 0 {
		t.Fatalf("e2e: quarantined message delivered %d times before its release", k)
	}

	// Released from B and C at the same moment: one wins.
	type result struct {
		node string
		out  string
		err  error
	}
	results := make([]result, 2)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, n := range []*node{b, cc} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out, err := exec.Command(mxgateBin, "quarantine", "release", "-http", "http://"+n.http, "-by", "e2e-"+n.name, id1).CombinedOutput()
			results[i] = result{n.name, string(out), err}
		}()
	}
	close(start)
	wg.Wait()
	won := 0
	for _, r := range results {
		switch {
		case r.err == nil && strings.Contains(r.out, "released "+id1):
			won++
		case r.err != nil && (strings.Contains(r.out, "already released") || strings.Contains(r.out, "being released")):
		default:
			t.Errorf("e2e: release on %s: %v %q", r.node, r.err, r.out)
		}
	}
	if won != 1 {
		t.Fatalf("e2e: concurrent releases on %s and %s: %d succeeded, want exactly 1: %+v", b.name, cc.name, won, results)
	}
	d := waitDelivery(t, c.be, "<qc1@client.e2e.test>")
	if rel := smtptest.HeaderValue(d.Data, "X-Quarantine-Released"); !strings.HasPrefix(rel, "by e2e-mx") {
		t.Errorf("e2e: X-Quarantine-Released %q", rel)
	}
	// A third release, from A, is refused too.
	if out, err := exec.Command(mxgateBin, "quarantine", "release", "-http", "http://"+a.http, id1).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "already released") {
		t.Errorf("e2e: release on %s after the release: %v %q, want a refusal", a.name, err, out)
	}
	// Every node's queue has been through a delivery since: a second copy
	// would have arrived by now.
	for i, n := range c.nodes {
		sendClean(t, c, n, fmt.Sprintf("qc-clean%d", i))
	}
	if k := deliveriesOf(c.be, "qc1"); k != 1 {
		t.Fatalf("e2e: released message delivered %d times, want 1", k)
	}
	waitCaughtUp(t, leader, c.nodes, 20*time.Second)
	for _, n := range c.nodes {
		if st := lsState(t, n, id1); st != "released" {
			t.Errorf("e2e: %s lists %s as %q, want released", n.name, id1, st)
		}
	}

	// Enough entries through A for the log to be compacted past them.
	ids := map[string]string{}
	for i := range threshold + 8 {
		mid := fmt.Sprintf("qk%d", i)
		ids[mid] = mustQuarantine(t, a, mid, "kept "+mid)
	}
	wait.For(t, 30*time.Second, "every node to snapshot and the leader to compact its log", func() (bool, string) {
		var seen []string
		ok := true
		for _, n := range c.nodes {
			s, err := n.clusterStatus()
			if err != nil {
				return false, err.Error()
			}
			seen = append(seen, fmt.Sprintf("%s last_snapshot_index=%d fsm=%d", n.name, s.LastSnapshotIndex, s.FSMSizeBytes))
			ok = ok && s.LastSnapshotIndex > 0
		}
		return ok && leader.logContains("compacting logs"), strings.Join(seen, "; ")
	})

	// A dies with -9 and loses its data dir (a dead disk); B and C still
	// list its entries and release one.
	a.kill9()
	if err := os.RemoveAll(filepath.Join(a.dir, "data")); err != nil {
		t.Fatal(err)
	}
	survivors := []*node{b, cc}
	leader = waitAgreed(t, survivors, 3, 30*time.Second)
	if st := lsState(t, cc, ids["qk0"]); st != "held" {
		t.Fatalf("e2e: %s lists %s (quarantined through the dead %s) as %q, want held", cc.name, ids["qk0"], a.name, st)
	}
	if out := runCLI(t, "quarantine", "release", "-http", "http://"+cc.http, ids["qk0"]); !strings.Contains(out, "released "+ids["qk0"]) {
		t.Fatalf("e2e: release on %s: %q", cc.name, out)
	}
	waitDelivery(t, c.be, "<qk0@client.e2e.test>")

	// A voter that lost its Raft state must not come back as the voter it
	// was (it no longer has the entries it acknowledged), so the operator
	// removes it first, as README "Cluster" says for a dead node
	// (`mxgate cluster remove`, once gossip has it dead; the nodes run
	// with remove_dead_after: 1h, so the leader does not do it itself).
	// A then restarts under the same name, with the same config and
	// certificates and an empty data dir: with others holding Raft state
	// it does not bootstrap, the leader adds it back as a voter when it
	// is alive in gossip, and, its log compacted, sends it the snapshot.
	wait.For(t, 20*time.Second, a.name+" dead in gossip", func() (bool, string) {
		ms, err := b.clusterMembers()
		if err != nil {
			return false, err.Error()
		}
		for _, m := range ms {
			if m.Name == a.name {
				return m.Status == "left" || m.Status == "dead", "status " + m.Status
			}
		}
		return false, "not listed"
	})
	if out := runCLI(t, "cluster", "remove", "-http", "http://"+b.http, a.name); !strings.Contains(out, "removed "+a.name) {
		t.Fatalf("e2e: mxgate cluster remove %s said %q", a.name, out)
	}
	waitAgreed(t, survivors, 2, 20*time.Second)
	a.start()
	alive := []*node{a, b, cc}
	leader = waitAgreed(t, alive, 3, 30*time.Second)
	wait.For(t, 20*time.Second, a.name+" to install the leader's snapshot", func() (bool, string) {
		return a.logContains("Installed remote snapshot"), "no \"Installed remote snapshot\" in its log"
	})
	waitCaughtUp(t, leader, alive, 20*time.Second)
	ls := quarantineLs(t, a, "-limit", "500")
	for mid, id := range ids {
		want := "held"
		if mid == "qk0" {
			want = "released"
		}
		if st := lsState(t, a, id); st != want {
			t.Errorf("e2e: %s lists %s (%s) as %q, want %s:\n%s", a.name, id, mid, st, want, ls)
		}
	}
	if st := lsState(t, a, id1); st != "released" {
		t.Errorf("e2e: %s lists %s as %q, want released", a.name, id1, st)
	}
	last := fmt.Sprintf("qk%d", threshold+7)
	if out := runCLI(t, "quarantine", "release", "-http", "http://"+a.http, ids[last]); !strings.Contains(out, "released "+ids[last]) {
		t.Fatalf("e2e: release on %s: %q", a.name, out)
	}
	d = waitDelivery(t, c.be, "<"+last+"@client.e2e.test>")
	if !strings.Contains(string(d.Data), gtube) {
		t.Errorf("e2e: the message released by %s lost its body", a.name)
	}
	sendClean(t, c, a, "qc-clean4")
	for _, mid := range []string{"qc1", "qk0", last} {
		if k := deliveriesOf(c.be, mid); k != 1 {
			t.Errorf("e2e: %s delivered %d times, want 1", mid, k)
		}
	}
	if k := deliveriesOf(c.be, "qk1"); k != 0 {
		t.Errorf("e2e: qk1, never released, delivered %d times", k)
	}
}

// TestQuarantineClusterNoQuorum: with two of three nodes killed, a message
// that would be quarantined gets 451 4.3.0 and nothing is kept, not even
// once the cluster is back; the sender's retry is then quarantined.
func TestQuarantineClusterNoQuorum(t *testing.T) {
	c := newQuarantineCluster(t, 3)
	waitAgreed(t, c.nodes, 3, 30*time.Second)
	survivor := c.nodes[0]
	c.nodes[1].kill9()
	c.nodes[2].kill9()
	wait.For(t, 20*time.Second, survivor.name+" to know it has no leader", func() (bool, string) {
		s, err := survivor.clusterStatus()
		if err != nil {
			return false, err.Error()
		}
		return s.Leader == "" && s.State != "leader", fmt.Sprintf("%+v", s)
	})
	started := time.Now()
	rep := quarantineSpam(t, survivor, "nq1", "no quorum offer")
	took := time.Since(started)
	if !rep.is("451 4.3.0") {
		t.Fatalf("e2e: quarantine candidate without quorum: %q after %v, want 451 4.3.0", rep, took)
	}
	t.Logf("e2e: quarantine candidate without quorum answered %q after %v", rep, took.Round(time.Millisecond))
	if ls := quarantineLs(t, survivor); strings.Contains(ls, "no quorum offer") {
		t.Errorf("e2e: %s lists the refused message: %q", survivor.name, ls)
	}
	if v, ok, _ := survivor.metric("mxgate_quarantine_writes_total", "result", "ok"); ok && v != 0 {
		t.Errorf("e2e: mxgate_quarantine_writes_total{result=ok} = %v on %s, want 0", v, survivor.name)
	}

	// Back to three: the refused message is nowhere, and the retry is kept.
	c.nodes[1].start()
	c.nodes[2].start()
	leader := waitAgreed(t, c.nodes, 3, 30*time.Second)
	id := mustQuarantine(t, c.nodes[1], "nq1", "no quorum offer")
	waitCaughtUp(t, leader, c.nodes, 20*time.Second)
	for _, n := range c.nodes {
		ls := quarantineLs(t, n)
		if k := strings.Count(ls, "no quorum offer"); k != 1 || !strings.Contains(ls, id) {
			t.Errorf("e2e: %s lists the message %d times (want once, as %s): %q", n.name, k, id, ls)
		}
	}
	if k := deliveriesOf(c.be, "nq1"); k != 0 {
		t.Errorf("e2e: the quarantine candidate was delivered %d times", k)
	}
}
