package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/testport"
	"github.com/mxgate/mxgate/internal/wait"
)

// clusterOptions is a node's cluster section.
type clusterOptions struct {
	gossip, raft    string // fixed 127.0.0.1 ports, the same on every restart
	join            []string
	bootstrapExpect int
	// tlsDir holds what `mxgate cluster tls-init` wrote: ca.pem,
	// NODE.pem, NODE-key.pem and gossip.key.
	tlsDir          string
	removeDeadAfter time.Duration // zero: the default
}

func (c *clusterOptions) yaml(name string) string {
	var b strings.Builder
	b.WriteString("cluster:\n")
	fmt.Fprintf(&b, "  gossip: %q\n", c.gossip)
	fmt.Fprintf(&b, "  raft: %q\n", c.raft)
	if len(c.join) > 0 {
		fmt.Fprintf(&b, "  join: [%s]\n", quoteList(c.join))
	}
	if c.bootstrapExpect > 0 {
		fmt.Fprintf(&b, "  bootstrap_expect: %d\n", c.bootstrapExpect)
	}
	fmt.Fprintf(&b, "  secret_file: %q\n", filepath.Join(c.tlsDir, "gossip.key"))
	if c.removeDeadAfter > 0 {
		fmt.Fprintf(&b, "  remove_dead_after: %s\n", c.removeDeadAfter)
	}
	fmt.Fprintf(&b, "  tls: {ca: %q, cert: %q, key: %q}\n", filepath.Join(c.tlsDir, "ca.pem"),
		filepath.Join(c.tlsDir, name+".pem"), filepath.Join(c.tlsDir, name+"-key.pem"))
	return b.String()
}

// tlsInit runs `mxgate cluster tls-init` for the named nodes; run again
// on the same dir, it adds nodes under the same CA and gossip key.
func tlsInit(t testing.TB, dir string, names ...string) {
	t.Helper()
	out, err := exec.Command(mxgateBin, "cluster", "tls-init", "-dir", dir, "-nodes", strings.Join(names, ",")).CombinedOutput()
	if err != nil {
		t.Fatalf("e2e: mxgate cluster tls-init -nodes %s: %v\n%s", strings.Join(names, ","), err, out)
	}
	for _, f := range []string{"ca.pem", "gossip.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("e2e: tls-init wrote no %s: %v\n%s", f, err, out)
		}
	}
	for _, name := range names {
		for _, f := range []string{name + ".pem", name + "-key.pem"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Fatalf("e2e: tls-init wrote no %s: %v\n%s", f, err, out)
			}
		}
	}
}

// gossipAddr is freeAddr for memberlist, which binds TCP and UDP on the
// same port: the UDP port must be free too.
func gossipAddr(t testing.TB) string {
	t.Helper()
	addr, err := testport.Addr(true)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// clusterGreylist is the greylist section of the cluster tests: a short
// delay, and no auto-allow, so that every triplet of the one loopback /24
// is decided on its own.
func clusterGreylist(delay time.Duration) string {
	return fmt.Sprintf("{enabled: true, delay: %s, retry_window: 1h, lifetime: 1d, auto_allow_after: 0}", delay)
}

// testCluster is a set of mxgate nodes in one cluster, sharing a backend
// and a tls-init directory; each node has its own clamd.
type testCluster struct {
	t        *testing.T
	tlsDir   string
	greylist string
	env      []string
	be       *smtptest.Server
	nodes    []*node
	cluster  []*clusterOptions // by index of nodes
	launched time.Time         // when the first nodes were started
}

// newTestCluster writes the configs of size nodes named mx1..mxN, each
// joining all the others with bootstrap_expect size, and starts them at
// the same moment; it returns once every node answers /readyz (which
// does not wait for the cluster to form).
func newTestCluster(t *testing.T, size int, greylist string, env ...string) *testCluster {
	t.Helper()
	return newTestClusterDeadAfter(t, size, greylist, time.Hour, env...)
}

// newTestClusterDeadAfter is newTestCluster with cluster.remove_dead_after
// set to deadAfter.
func newTestClusterDeadAfter(t *testing.T, size int, greylist string, deadAfter time.Duration, env ...string) *testCluster {
	t.Helper()
	c := &testCluster{t: t, tlsDir: filepath.Join(t.TempDir(), "tls"), greylist: greylist, env: env, be: smtptest.Start(t)}
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
		c.newNode(name, &clusterOptions{gossip: gossips[i], raft: freeAddr(t), join: join,
			bootstrapExpect: size, tlsDir: c.tlsDir, removeDeadAfter: deadAfter})
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

func (c *testCluster) newNode(name string, co *clusterOptions) *node {
	c.t.Helper()
	n := newNode(c.t, nodeOptions{name: name, backends: []string{c.be.Addr()}, greylist: c.greylist, cluster: co, env: c.env})
	// Registered after the node's own cleanup, so it runs before it,
	// while the node still answers.
	c.t.Cleanup(func() { c.dumpOnFailure(n) })
	c.nodes = append(c.nodes, n)
	c.cluster = append(c.cluster, co)
	return n
}

// addNode makes a certificate for one more node, configures it to join
// every node so far and starts it.
func (c *testCluster) addNode() *node {
	c.t.Helper()
	name := fmt.Sprintf("mx%d", len(c.nodes)+1)
	tlsInit(c.t, c.tlsDir, name)
	var join []string
	for _, co := range c.cluster {
		join = append(join, co.gossip)
	}
	n := c.newNode(name, &clusterOptions{gossip: gossipAddr(c.t), raft: freeAddr(c.t), join: join,
		bootstrapExpect: c.cluster[0].bootstrapExpect, tlsDir: c.tlsDir, removeDeadAfter: time.Hour})
	n.start()
	return n
}

// running reports whether the node's process is up.
func (n *node) running() bool {
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// dumpOnFailure logs what a running node thinks of the cluster and the
// cluster lines of its log: the harness shows the log's tail, where
// session lines crowd out Raft's.
func (c *testCluster) dumpOnFailure(n *node) {
	if !c.t.Failed() {
		return
	}
	var b strings.Builder
	if n.running() {
		if st, err := n.clusterStatus(); err != nil {
			fmt.Fprintf(&b, "status: %v\n", err)
		} else {
			fmt.Fprintf(&b, "status: %+v\n", st)
		}
		if ms, err := n.clusterMembers(); err != nil {
			fmt.Fprintf(&b, "members: %v\n", err)
		} else {
			for _, m := range ms {
				fmt.Fprintf(&b, "member: %+v\n", m)
			}
		}
	} else {
		b.WriteString("not running\n")
	}
	b.WriteString("cluster log lines:\n")
	b.WriteString(n.clusterLogTail(40))
	c.t.Logf("e2e: node %s (http %s):\n%s", n.name, n.http, b.String())
}

// clusterLogTail returns the last log lines about the cluster: mxgate's
// cluster events and Raft's and memberlist's own lines.
func (n *node) clusterLogTail(lines int) string {
	data, err := os.ReadFile(n.logPath)
	if err != nil {
		return err.Error()
	}
	var out []string
	for line := range strings.SplitSeq(strings.TrimRight(string(data), "\n"), "\n") {
		if strings.Contains(line, `"event":"cluster`) || strings.Contains(line, `"event":"gossip`) ||
			strings.Contains(line, "raft") || strings.Contains(line, `"event":"start"`) || !strings.HasPrefix(line, "{") {
			out = append(out, line)
		}
	}
	if len(out) > lines {
		out = out[len(out)-lines:]
	}
	return strings.Join(out, "\n")
}

// logContains reports whether the node's log has a line with s.
func (n *node) logContains(s string) bool {
	data, err := os.ReadFile(n.logPath)
	return err == nil && strings.Contains(string(data), s)
}

// clusterStatus is GET /api/v1/cluster/status, with the contract's names.
type clusterStatus struct {
	Node              string `json:"node"`
	State             string `json:"state"`
	Leader            string `json:"leader"`
	LeaderAddr        string `json:"leader_addr"`
	Term              uint64 `json:"term"`
	CommitIndex       uint64 `json:"commit_index"`
	AppliedIndex      uint64 `json:"applied_index"`
	LastLogIndex      uint64 `json:"last_log_index"`
	LastContact       string `json:"last_contact"`
	LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	Voters            int    `json:"voters"`
	FSMSizeBytes      int64  `json:"fsm_size_bytes"`
	GossipAlive       int    `json:"gossip_alive"`
	BootstrapExpect   int    `json:"bootstrap_expect"`
}

// clusterMember is one entry of GET /api/v1/cluster/members.
type clusterMember struct {
	Name    string `json:"name"`
	Gossip  string `json:"gossip"`
	Status  string `json:"status"`
	Raft    string `json:"raft"`
	SMTP    string `json:"smtp"`
	HTTP    string `json:"http"`
	Version string `json:"version"`
	Voter   bool   `json:"voter"`
	Leader  bool   `json:"leader"`
}

func (n *node) getJSON(path string, out any) error {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + n.http + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s on %s: %s: %s", path, n.name, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s on %s: %v: %s", path, n.name, err, body)
	}
	return nil
}

func (n *node) clusterStatus() (clusterStatus, error) {
	var s clusterStatus
	err := n.getJSON("/api/v1/cluster/status", &s)
	return s, err
}

func (n *node) clusterMembers() ([]clusterMember, error) {
	var r struct {
		Members []clusterMember `json:"members"`
	}
	err := n.getJSON("/api/v1/cluster/members", &r)
	return r.Members, err
}

// mustStatus is clusterStatus that fails the test on error.
func (n *node) mustStatus() clusterStatus {
	n.t.Helper()
	s, err := n.clusterStatus()
	if err != nil {
		n.t.Fatalf("e2e: %v", err)
	}
	return s
}

// agreed checks that the nodes agree on one leader among them, each is
// leader or follower, and each counts voters voters. It returns the
// leader, or nil and what it saw.
func agreed(nodes []*node, voters int) (*node, string) {
	var leader *node
	var seen []string
	leaderName := ""
	ok := true
	for _, n := range nodes {
		s, err := n.clusterStatus()
		if err != nil {
			return nil, err.Error()
		}
		seen = append(seen, fmt.Sprintf("%s: %s leader=%q term=%d voters=%d commit=%d applied=%d",
			n.name, s.State, s.Leader, s.Term, s.Voters, s.CommitIndex, s.AppliedIndex))
		switch s.State {
		case "leader":
			if leader != nil {
				ok = false
			}
			leader = n
		case "follower":
		default:
			ok = false
		}
		if s.Leader == "" || (leaderName != "" && s.Leader != leaderName) || s.Voters != voters {
			ok = false
		}
		leaderName = s.Leader
	}
	if !ok || leader == nil || leader.name != leaderName {
		return nil, strings.Join(seen, "; ")
	}
	return leader, strings.Join(seen, "; ")
}

// waitAgreed waits until agreed holds and returns the leader.
func waitAgreed(t *testing.T, nodes []*node, voters int, timeout time.Duration) *node {
	t.Helper()
	var leader *node
	wait.For(t, timeout, fmt.Sprintf("one leader and %d voters seen alike by %d nodes", voters, len(nodes)), func() (bool, string) {
		l, seen := agreed(nodes, voters)
		leader = l
		return l != nil, seen
	})
	return leader
}

// waitCaughtUp waits until every node has applied at least the leader's
// commit index as of now: a write acknowledged before the call is then
// readable on each of them.
func waitCaughtUp(t *testing.T, leader *node, nodes []*node, timeout time.Duration) uint64 {
	t.Helper()
	commit := leader.mustStatus().CommitIndex
	wait.For(t, timeout, fmt.Sprintf("every node to apply index %d (%s's commit index)", commit, leader.name), func() (bool, string) {
		var seen []string
		done := true
		for _, n := range nodes {
			s, err := n.clusterStatus()
			if err != nil {
				return false, err.Error()
			}
			seen = append(seen, fmt.Sprintf("%s applied=%d commit=%d", n.name, s.AppliedIndex, s.CommitIndex))
			done = done && s.AppliedIndex >= commit
		}
		return done, strings.Join(seen, ", ")
	})
	return commit
}

// greylistCounts is mxgate_greylist_decisions_total by result on a node.
func greylistCounts(t *testing.T, n *node) map[string]float64 {
	t.Helper()
	all, err := n.metrics()
	if err != nil {
		t.Fatalf("e2e: metrics of %s: %v", n.name, err)
	}
	out := map[string]float64{}
	for _, r := range []string{"new", "early_retry", "passed", "allowed", "auto_allowed", "store_error"} {
		out[r] = all[`mxgate_greylist_decisions_total{result="`+r+`"}`]
	}
	return out
}

// diffCounts is after - before for each result that changed.
func diffCounts(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// tryRcpt runs one session from 127.0.0.1 up to RCPT and returns the RCPT
// reply; unlike rcptFrom it is safe in goroutines. err is set when the
// connection failed or the greeting, EHLO or MAIL was not accepted.
func tryRcpt(addr, from, rcpt string) (smtpReply, error) {
	c, err := dialSMTP(addr)
	if err != nil {
		return smtpReply{}, err
	}
	defer c.close()
	if _, err := c.hello(); err != nil {
		return smtpReply{}, err
	}
	if rep, err := c.cmd("MAIL FROM:<" + from + ">"); err != nil {
		return rep, fmt.Errorf("MAIL: %w", err)
	} else if !rep.is("250") {
		return rep, fmt.Errorf("MAIL: %q", rep)
	}
	rep, err := c.cmd("RCPT TO:<" + rcpt + ">")
	if err != nil {
		return rep, fmt.Errorf("RCPT: %w", err)
	}
	_, _ = c.cmd("QUIT")
	return rep, nil
}

// greylistMany greylists count new triplets (from, PREFIX-i@e2e.test) in
// one session on n: a refused RCPT does not end the transaction, so every
// RCPT is one replicated write. It fails unless each answer is 451 4.7.1.
func greylistMany(t *testing.T, n *node, from, prefix string, count int) []string {
	t.Helper()
	c, err := dialSMTP(n.inbound)
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	defer c.close()
	if _, err := c.hello(); err != nil {
		t.Fatalf("e2e: %s: %v", n.name, err)
	}
	c.expectCmd(t, "MAIL FROM:<"+from+">", "250")
	rcpts := make([]string, count)
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("%s-%d@e2e.test", prefix, i)
		c.expectCmd(t, "RCPT TO:<"+rcpts[i]+">", "451 4.7.1")
	}
	return rcpts
}

// runCLI runs mxgate with args and returns its standard output; it fails
// the test unless the command exits 0.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(mxgateBin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("e2e: mxgate %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}
