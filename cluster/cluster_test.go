package cluster

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mxgate/mxgate/greylist"
)

// clusterFixture runs Clusters in this process on loopback, with TLS and
// an encrypted gossip key as in production and shortened timings.
type clusterFixture struct {
	t      *testing.T
	key    []byte
	caCert []byte
	caKey  []byte
	dir    string
	expect int
	dead   time.Duration
	expire time.Duration
	nodes  map[string]*Cluster
	gossip map[string]string // name → gossip bind address, kept across restarts
	raftA  map[string]string
	// certFor, when set for a node, names the node its certificate is
	// issued for instead (an impostor).
	certFor map[string]string
}

func newClusterFixture(t *testing.T, expect int) *clusterFixture {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	caCert, caKey, err := GenerateCA(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := &clusterFixture{t: t, key: key, caCert: caCert, caKey: caKey, dir: t.TempDir(), expect: expect,
		dead: time.Hour, expire: time.Hour, nodes: map[string]*Cluster{}, gossip: map[string]string{}, raftA: map[string]string{}}
	t.Cleanup(func() {
		for _, c := range f.nodes {
			_ = c.Shutdown()
		}
	})
	return f
}

func (f *clusterFixture) tls(name string) *TLS {
	f.t.Helper()
	cert, key, err := IssueNodeCert(f.caCert, f.caKey, name, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		f.t.Fatal(err)
	}
	files := TLSFiles{CA: filepath.Join(f.dir, "ca.pem"), Cert: filepath.Join(f.dir, name+".pem"), Key: filepath.Join(f.dir, name+"-key.pem")}
	for p, b := range map[string][]byte{files.CA: f.caCert, files.Cert: cert, files.Key: key} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			f.t.Fatal(err)
		}
	}
	tl, err := LoadTLS(files)
	if err != nil {
		f.t.Fatal(err)
	}
	return tl
}

// start starts (or restarts) node name, joining the given nodes.
func (f *clusterFixture) start(name string, join ...string) *Cluster {
	f.t.Helper()
	if f.gossip[name] == "" {
		f.gossip[name], f.raftA[name] = freeAddr(f.t), freeAddr(f.t)
	}
	var seeds []string
	for _, j := range join {
		seeds = append(seeds, f.gossip[j])
	}
	c, err := Start(Config{
		Name: name, Dir: filepath.Join(f.dir, name),
		GossipBind: f.gossip[name], RaftBind: f.raftA[name],
		Join: seeds, BootstrapExpect: f.expect, SecretKey: f.key, TLS: f.tls(cmp.Or(f.certFor[name], name)),
		RemoveDeadAfter: f.dead, ExpireInterval: f.expire,
		Meta:          Meta{Version: "test", SMTP: "127.0.0.1:25"},
		ConfigureRaft: fastRaft,
		ConfigureGossip: func(mc *memberlist.Config) {
			mc.ProbeInterval = 100 * time.Millisecond
			mc.ProbeTimeout = 50 * time.Millisecond
			mc.GossipInterval = 20 * time.Millisecond
			mc.PushPullInterval = time.Second
			mc.SuspicionMult = 2
			mc.TCPTimeout = time.Second
		},
	})
	if err != nil {
		f.t.Fatalf("start %s: %v", name, err)
	}
	f.nodes[name] = c
	return c
}

func (f *clusterFixture) stop(name string) {
	f.t.Helper()
	if err := f.nodes[name].Shutdown(); err != nil {
		f.t.Logf("shutdown %s: %v", name, err)
	}
	delete(f.nodes, name)
}

func (f *clusterFixture) leader() *Cluster {
	f.t.Helper()
	var l *Cluster
	waitFor(f.t, 15*time.Second, "one leader", func() bool {
		l = nil
		for _, c := range f.nodes {
			if c.Node().State() == raft.Leader {
				if l != nil {
					return false
				}
				l = c
			}
		}
		return l != nil
	})
	return l
}

// waitTriplet waits until every running node's local state has (or, with
// present false, no longer has) the triplet key.
func (f *clusterFixture) waitTriplet(key string, present bool) {
	f.t.Helper()
	for name, c := range f.nodes {
		waitFor(f.t, 10*time.Second, fmt.Sprintf("%s: triplet %s present=%v", name, key, present), func() bool {
			_, ok, _ := c.Node().FSM().GetTriplet(key)
			return ok == present
		})
	}
}

func voters(t *testing.T, c *Cluster) map[string]bool {
	t.Helper()
	servers, err := c.Node().Configuration()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, s := range servers {
		out[string(s.ID)] = true
	}
	return out
}

func sameSet(got map[string]bool, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		if !got[w] {
			return false
		}
	}
	return true
}

func TestClusterBootstrapsFromGossip(t *testing.T) {
	f := newClusterFixture(t, 3)
	a := f.start("a")
	// Alone, a must not bootstrap: it expects three.
	f.start("b", "a")
	f.start("c", "b") // c knows only b; gossip tells it of a.
	l := f.leader()
	for name, c := range f.nodes {
		waitFor(t, 10*time.Second, name+" sees three voters", func() bool { return sameSet(voters(t, c), "a", "b", "c") })
	}

	// A write through any node is on every node (over TLS).
	store := NewGreylistStore(a.Node())
	tr := greylist.Triplet{FirstSeen: time.Unix(100, 0), ExpiresAt: time.Now().Add(time.Hour)}
	if err := store.PutTriplet(context.Background(), "k1", tr); err != nil {
		t.Fatal(err)
	}
	f.waitTriplet("k1", true)

	ms := l.Members()
	if len(ms) != 3 {
		t.Fatalf("members: %+v", ms)
	}
	leaders := 0
	for _, m := range ms {
		if m.Status != "alive" || !m.Voter || m.Raft == "" || m.Version != "test" {
			t.Errorf("member %+v", m)
		}
		if m.Leader {
			leaders++
		}
	}
	if leaders != 1 {
		t.Errorf("%d leaders in %+v", leaders, ms)
	}
	st := a.Status()
	if st.Voters != 3 || st.Leader == "" || st.CommitIndex == 0 || st.GossipAlive != 3 {
		t.Errorf("status %+v", st)
	}
}

func TestClusterAddsLateNodeAndRemovesDead(t *testing.T) {
	f := newClusterFixture(t, 3)
	f.dead = 2 * time.Second
	f.start("a")
	f.start("b", "a")
	f.start("c", "a")
	f.leader()
	// d starts later, fresh: it must not bootstrap a cluster of its own
	// but be added by the leader.
	d := f.start("d", "c")
	waitFor(t, 15*time.Second, "d is a voter", func() bool { return sameSet(voters(t, d), "a", "b", "c", "d") })

	// Stop a follower for good: after RemoveDeadAfter the leader removes it.
	l := f.leader()
	var victim string
	for name := range f.nodes {
		if f.nodes[name] != l && name != "d" {
			victim = name
			break
		}
	}
	f.stop(victim)
	var rest []string
	for name := range f.nodes {
		rest = append(rest, name)
	}
	waitFor(t, 20*time.Second, victim+" removed", func() bool { return sameSet(voters(t, f.leader()), rest...) })
}

func TestClusterRemoveByOperator(t *testing.T) {
	f := newClusterFixture(t, 3)
	f.start("a")
	f.start("b", "a")
	f.start("c", "a")
	l := f.leader()
	var follower *Cluster
	var victim string
	for name, c := range f.nodes {
		if c != l && follower == nil {
			follower = c
		} else if c != l {
			victim = name
		}
	}
	if err := follower.Remove(victim); err == nil {
		t.Fatalf("removing the alive node %s was accepted", victim)
	}
	if err := follower.Remove("nosuch"); err == nil {
		t.Fatal("removing an unknown node was accepted")
	}
	f.stop(victim)
	waitFor(t, 10*time.Second, victim+" not alive in gossip", func() bool {
		for _, m := range follower.Members() {
			if m.Name == victim {
				return m.Status != "alive" && m.Status != "suspect"
			}
		}
		return false
	})
	// Through a follower: the request is forwarded to the leader.
	if err := follower.Remove(victim); err != nil {
		t.Fatalf("remove %s: %v", victim, err)
	}
	waitFor(t, 5*time.Second, "two voters", func() bool { return len(voters(t, follower)) == 2 })
}

func TestClusterRestartKeepsVoter(t *testing.T) {
	f := newClusterFixture(t, 3)
	f.start("a")
	f.start("b", "a")
	f.start("c", "a")
	f.leader()
	f.stop("b")
	b := f.start("b", "a")
	waitFor(t, 10*time.Second, "b rejoins", func() bool {
		id, _ := b.Node().Leader()
		return id != "" && sameSet(voters(t, b), "a", "b", "c")
	})
	if !b.Node().HasState() {
		t.Fatal("restarted node has no state")
	}
}

func TestLevelWriter(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w := levelWriter{log: logger, component: "raft", info: slog.LevelInfo}
	for _, line := range []string{
		"[ERROR] raft: failed to take snapshot: x\n",
		"[WARN]  raft: heartbeat timeout reached\n",
		"[INFO]  raft: entering follower state\n",
		"[DEBUG] raft: votes: needed=2\n",
		"2024/01/01 [ERR] memberlist: no route\n",
	} {
		if _, err := w.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprint(rec["level"], " ", rec["msg"]))
	}
	want := []string{"ERROR raft: failed to take snapshot: x", "WARN raft: heartbeat timeout reached",
		"INFO raft: entering follower state", "DEBUG raft: votes: needed=2", "INFO 2024/01/01 [ERR] memberlist: no route"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestWithHost(t *testing.T) {
	for in, want := range map[string]string{":25": "10.0.0.1:25", "0.0.0.0:8025": "10.0.0.1:8025", "[::]:26": "10.0.0.1:26",
		"192.0.2.1:25": "192.0.2.1:25", "mx1.example.net:25": "mx1.example.net:25", "": ""} {
		if got := withHost(in, "10.0.0.1"); got != want {
			t.Errorf("withHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClusterLeaderIssuesExpiry(t *testing.T) {
	f := newClusterFixture(t, 3)
	f.expire = 200 * time.Millisecond
	a := f.start("a")
	f.start("b", "a")
	f.start("c", "a")
	f.leader()
	store := NewGreylistStore(a.Node())
	now := time.Now()
	live := greylist.Triplet{FirstSeen: now, ExpiresAt: now.Add(time.Hour)}
	dead := greylist.Triplet{FirstSeen: now, ExpiresAt: now.Add(300 * time.Millisecond)}
	// dead is written first: a node that has live has applied dead too
	// (the log is applied in order), so its absence later is expiry.
	if err := store.PutTriplet(context.Background(), "dead", dead); err != nil {
		t.Fatal(err)
	}
	if err := store.PutTriplet(context.Background(), "live", live); err != nil {
		t.Fatal(err)
	}
	f.waitTriplet("live", true)
	// No node reads the clock to expire: the leader's CmdExpire, carrying
	// its time, removes the entry everywhere.
	f.waitTriplet("dead", false)
	for name, c := range f.nodes {
		if _, ok, _ := c.Node().FSM().GetTriplet("live"); !ok {
			t.Errorf("%s lost the live triplet", name)
		}
	}
}

func TestNodePortRefusesWithoutClusterCertificate(t *testing.T) {
	f := newClusterFixture(t, 1)
	c := f.start("a")
	f.leader()
	before := testutil.ToFloat64(metricTLSHandshakeErrors)

	// Plain TCP speaking the forwarding protocol: no TLS, no answer.
	conn, err := net.DialTimeout("tcp", c.Node().Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cmd := EncodePutTriplet("intruder", triplet(t0.Add(time.Hour)))
	req := append([]byte{connForward}, make([]byte, 8)...)
	req = binary.BigEndian.AppendUint32(req, uint32(len(cmd)))
	if _, err := conn.Write(append(req, cmd...)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := io.ReadAll(conn); err == nil && len(n) > 0 && n[0] == fwdOK {
		t.Fatal("a plain TCP forward was served")
	}

	// TLS with a certificate from another CA: refused in the handshake.
	otherCA, otherKey, err := GenerateCA(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other := &clusterFixture{t: t, caCert: otherCA, caKey: otherKey, dir: t.TempDir()}
	stranger := other.tls("a")
	cfg := stranger.ClientConfig()
	cfg.RootCAs = f.tls("b").ClientConfig().RootCAs // trust the cluster, to reach the server's check
	tc, err := tls.Dial("tcp", c.Node().Addr(), cfg)
	if err == nil {
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		_, werr := tc.Write([]byte{connForward})
		_, rerr := tc.Read(make([]byte, 1))
		tc.Close()
		if werr == nil && rerr == nil {
			t.Fatal("a certificate from another CA was accepted")
		}
	}
	waitFor(t, 5*time.Second, "handshake errors counted", func() bool {
		return testutil.ToFloat64(metricTLSHandshakeErrors) >= before+2
	})
	if _, ok, _ := c.Node().FSM().GetTriplet("intruder"); ok {
		t.Fatal("the intruder's write was applied")
	}
}

func TestClusterDoesNotAddMemberWithoutItsCertificate(t *testing.T) {
	f := newClusterFixture(t, 3)
	f.start("a")
	f.start("b", "a")
	f.start("c", "a")
	l := f.leader()
	before := testutil.ToFloat64(metricProbeFailures)
	// d has the gossip key and a certificate of the cluster CA, but one
	// issued for a: it must not become a voter.
	f.certFor = map[string]string{"d": "a"}
	f.start("d", "a")
	waitFor(t, 10*time.Second, "the leader to refuse d", func() bool {
		return testutil.ToFloat64(metricProbeFailures) > before
	})
	if v := voters(t, l); !sameSet(v, "a", "b", "c") {
		t.Fatalf("voters %v after an impostor joined gossip", v)
	}
}
