package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// greyTarget is a running system that greylists.
type greyTarget struct {
	addrs   []string     // SMTP listeners; the clients are spread over them
	nodes   []*mxgate    // its mxgate nodes, whose /metrics are read; nil for a peer
	pids    func() []int // its processes, for their CPU time
	want    string       // how its greylisting reply starts
	stop    func()
	logTail func() string
}

// scrape reads every node's /metrics.
func (t *greyTarget) scrape() ([]metrics, error) {
	out := make([]metrics, len(t.nodes))
	for i, m := range t.nodes {
		var err error
		if out[i], err = scrape(m.http); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// greylistConf is the nodes' greylist section. Every RCPT of the bench is
// a new triplet; the delay only has to outlast the run.
const greylistConf = "{enabled: true, delay: 1h}"

func startGreyStandalone(sinkAddr string) (*greyTarget, error) {
	m, err := startMxgate(sinkAddr, mxgateOptions{name: "mx1", perIP: *flagClusterC, greylist: greylistConf})
	if err != nil {
		return nil, err
	}
	return mxgateTarget([]*mxgate{m}), nil
}

// mxgateTarget is the greyTarget of nodes.
func mxgateTarget(nodes []*mxgate) *greyTarget {
	t := &greyTarget{nodes: nodes, want: "451 4.7.1"}
	for _, m := range nodes {
		t.addrs = append(t.addrs, m.addr())
	}
	t.pids = func() []int {
		var pids []int
		for _, m := range nodes {
			pids = append(pids, m.pids()...)
		}
		return pids
	}
	t.stop = func() {
		var wg sync.WaitGroup
		for _, m := range nodes {
			wg.Go(func() {
				if err := m.stop(); err != nil {
					fmt.Fprintf(os.Stderr, "bench: stopping mxgate: %v\n", err)
				}
			})
		}
		wg.Wait()
	}
	t.logTail = func() string {
		var b strings.Builder
		for i, m := range nodes {
			fmt.Fprintf(&b, "--- node %d (%s):\n%s\n", i+1, m.dir, m.logTail())
		}
		return b.String()
	}
	return t
}

// startGreyCluster starts three nodes that form a cluster (bootstrap_expect
// 3, TLS files from mxgate cluster tls-init) and waits until all three
// know the same leader and three voters.
func startGreyCluster(sinkAddr string) (_ *greyTarget, err error) {
	bin, err := filepath.Abs(*flagMxgate)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mxgate-bench-cluster-")
	if err != nil {
		return nil, err
	}
	// Registered now, so that an interrupt while the cluster forms stops
	// the nodes started so far.
	var nodes []*mxgate
	stopAll := onCleanup(func() {
		mxgateTarget(nodes).stop()
		os.RemoveAll(dir)
	})
	defer func() {
		if err != nil {
			if len(nodes) > 0 && !interrupted.Load() {
				err = fmt.Errorf("%w\nlogs:\n%s", err, mxgateTarget(nodes).logTail())
			}
			stopAll()
		}
	}()
	names := []string{"mx1", "mx2", "mx3"}
	tlsDir := filepath.Join(dir, "tls")
	if out, err := exec.Command(bin, "cluster", "tls-init", "-dir", tlsDir, "-nodes", strings.Join(names, ",")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mxgate cluster tls-init: %v %s", err, out)
	}
	gossip := make([]string, len(names))
	for i := range gossip {
		if gossip[i], err = freeGossipAddr(); err != nil {
			return nil, err
		}
	}
	for i, name := range names {
		raftAddr, err := freePort()
		if err != nil {
			return nil, err
		}
		var join []string
		for j, g := range gossip {
			if j != i {
				join = append(join, fmt.Sprintf("%q", g))
			}
		}
		conf := fmt.Sprintf(`cluster:
  gossip: %q
  raft: %q
  join: [%s]
  bootstrap_expect: %d
  secret_file: %q
  tls: {ca: %q, cert: %q, key: %q}
`, gossip[i], raftAddr, strings.Join(join, ", "), len(names), filepath.Join(tlsDir, "gossip.key"),
			filepath.Join(tlsDir, "ca.pem"), filepath.Join(tlsDir, name+".pem"), filepath.Join(tlsDir, name+"-key.pem"))
		m, err := startMxgate(sinkAddr, mxgateOptions{name: name, perIP: *flagClusterC, greylist: greylistConf, cluster: conf})
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", name, err)
		}
		nodes = append(nodes, m)
	}
	leader, err := waitLeader(nodes, 60*time.Second)
	if err != nil {
		return nil, err
	}
	fmt.Printf("bench: cluster formed, leader %s\n", leader)
	t := mxgateTarget(nodes)
	t.stop = stopAll
	return t, nil
}

// freeGossipAddr returns a loopback address whose port was free just now
// for both TCP and UDP (memberlist uses both).
func freeGossipAddr() (string, error) {
	var err error
	for range 20 {
		var addr string
		if addr, err = freePort(); err != nil {
			return "", err
		}
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp", addr); err == nil {
			pc.Close()
			return addr, nil
		}
	}
	return "", fmt.Errorf("no port free for both TCP and UDP: %w", err)
}

// clusterStatus is the part of GET /api/v1/cluster/status the bench reads.
type clusterStatus struct {
	Node   string `json:"node"`
	State  string `json:"state"`
	Leader string `json:"leader"`
	Voters int    `json:"voters"`
}

func (m *mxgate) clusterStatus() (clusterStatus, error) {
	var s clusterStatus
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + m.http + "/api/v1/cluster/status")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("cluster status: %s", resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// waitLeader waits until every node names the same leader and counts as
// many voters as there are nodes.
func waitLeader(nodes []*mxgate, d time.Duration) (string, error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last []string
	for deadline := time.Now().Add(d); ; {
		last = last[:0]
		leaders := map[string]bool{}
		ok := true
		for _, m := range nodes {
			s, err := m.clusterStatus()
			if err != nil {
				ok = false
				last = append(last, err.Error())
				continue
			}
			last = append(last, fmt.Sprintf("%s: %s, leader %q, %d voters", s.Node, s.State, s.Leader, s.Voters))
			leaders[s.Leader] = true
			ok = ok && s.Leader != "" && s.Voters == len(nodes)
		}
		if ok && len(leaders) == 1 {
			for l := range leaders {
				return l, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no common leader with %d voters after %v: %s", len(nodes), d, strings.Join(last, "; "))
		}
		<-tick.C // poll interval
	}
}

func startGreyPostgrey(sinkAddr, bin string) (_ *greyTarget, err error) {
	pg, err := startPostgrey(bin)
	if err != nil {
		return nil, fmt.Errorf("postgrey: %w", err)
	}
	stopPostgrey := onCleanup(pg.stop) // stopped on an interrupt while Postfix starts
	pf, err := startPostfixWith(sinkAddr, postgreyMainCF(pg.addr, *flagClusterC))
	if err != nil {
		stopPostgrey()
		return nil, err
	}
	return &greyTarget{
		addrs: []string{pf.addr()},
		pids:  func() []int { return append(pf.pids(), pg.pids()...) },
		// Postgrey answers DEFER_IF_PERMIT, which Postfix turns into
		// "450 4.2.0 <rcpt>: Recipient address rejected: Greylisted, see ...".
		want: "450 4.2.0",
		stop: func() {
			if err := pf.stop(); err != nil {
				fmt.Fprintf(os.Stderr, "bench: stopping postfix: %v\n", err)
			}
			stopPostgrey()
		},
		logTail: func() string {
			return "--- maillog:\n" + pf.logTail() + "\n--- postgrey:\n" + pg.logTail()
		},
	}, nil
}
