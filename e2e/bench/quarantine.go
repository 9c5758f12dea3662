package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/internal/dnstest"
)

var (
	flagQN         = flag.Int("quarantine-n", 2000, "quarantine scenario: spam messages quarantined (and as many clean ones delivered)")
	flagQSize      = flag.Int("quarantine-size", 4096, "quarantine scenario: size of those messages in bytes")
	flagQBig       = flag.Int("quarantine-big", 5, "quarantine scenario: 1 MB spam messages quarantined after them")
	flagQ100K      = flag.Int("quarantine-100k", 300, "quarantine scenario: 100 KB spam messages quarantined after them")
	flagQFillMiB   = flag.Int("quarantine-fill-mib", 1024, "quarantine scenario: MiB of compressed bodies (4 MB spam messages) added before the snapshot and restore are measured; 0: none")
	flagQC         = flag.Int("quarantine-c", 12, "quarantine scenario: concurrent SMTP clients (spread over the nodes)")
	flagQRounds    = flag.Int("quarantine-rounds", 5, "quarantine scenario: slices, quarantined and delivered load taking turns")
	flagQThreshold = flag.Int("quarantine-snapshot-threshold", 512, "quarantine scenario: MXGATE_RAFT_SNAPSHOT_THRESHOLD of the nodes")
)

// gtubeLine makes a message score 9 with the nodes' spam section: over
// spam.quarantine (8), under spam.reject (15).
const gtubeLine = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n"

// benchQuarantine measures the replicated quarantine on three mxgate nodes
// on loopback: spam that scores between spam.quarantine and spam.reject is
// committed through Raft (compressed body and metadata) before its 250,
// against the same load of clean mail on the same cluster, which is
// spooled and delivered instead, in interleaved slices. Then 100 KB and
// a few 1 MB messages (chunked in the log), the replicated state's size,
// the snapshots the nodes took (MXGATE_RAFT_SNAPSHOT_THRESHOLD), a fill
// with 4 MB messages to -quarantine-fill-mib of compressed bodies, the
// time each node takes to snapshot that state, and a fourth node joining
// with an empty data dir: the time until it installed the leader's
// snapshot and caught up (the restore).
func benchQuarantine() error {
	if *flagMxgate == "" {
		fmt.Println("bench: quarantine scenario skipped (no -mxgate PATH)")
		return nil
	}
	n, c, rounds := *flagQN, *flagQC, *flagQRounds
	if n < rounds || c < 1 || rounds < 1 || *flagQSize < 1024 || *flagQThreshold < 1 {
		return fmt.Errorf("need -quarantine-n >= -quarantine-rounds >= 1, -quarantine-c >= 1, -quarantine-size >= 1024, -quarantine-snapshot-threshold >= 1")
	}
	// Inherited by the nodes (startMxgate does not set their environment).
	os.Setenv("MXGATE_RAFT_SNAPSHOT_THRESHOLD", fmt.Sprint(*flagQThreshold))
	os.Setenv("MXGATE_RAFT_SNAPSHOT_INTERVAL", "1s")
	// A resolver that knows no name and answers at once, as in the e2e
	// tests: the nodes' DNS checks run, hermetic and fast.
	dns, err := dnstest.New(dnstest.Zone{})
	if err != nil {
		return err
	}
	defer dns.Close()
	spamConf := fmt.Sprintf("spam: {enabled: true, heuristics: true, scores: {GTUBE: 9}}\ndns: {resolver: %q}\nbayes: {enabled: false}", dns.Addr())

	sk, err := startSink(int64(n))
	if err != nil {
		return err
	}
	defer sk.close()
	qc, err := startQuarantineCluster(sk.addr(), spamConf, c)
	if err != nil {
		return err
	}
	defer qc.stop()
	fail := func(err error) error {
		if !interrupted.Load() {
			fmt.Fprintf(os.Stderr, "bench: quarantine cluster log tail:\n%s\n", mxgateTarget(qc.nodes).logTail())
		}
		return fmt.Errorf("quarantine: %w", err)
	}
	var addrs []string
	for _, m := range qc.nodes {
		addrs = append(addrs, m.addr())
	}

	fmt.Printf("bench: quarantine scenario: %d spam and %d clean messages of %d bytes, %d clients over 3 nodes, %d slices\n",
		n, n, *flagQSize, c, rounds)
	spamBody, cleanBody := quarantineBody(*flagQSize, true), quarantineBody(*flagQSize, false)
	var spam, clean qLoad
	per := n / rounds
	for r := range rounds {
		k := per
		if r == rounds-1 {
			k = n - per*(rounds-1)
		}
		first := int64(r * per)
		runs := []func() error{
			func() error { return spam.run(addrs, first, k, c, spamBody) },
			func() error { return clean.run(addrs, 1<<40+first, k, c, cleanBody) },
		}
		for _, f := range rotate(runs, r) {
			if err := f(); err != nil {
				return fail(err)
			}
		}
	}
	var mid qLoad
	if *flagQ100K > 0 {
		if err := mid.run(addrs, 1<<42, *flagQ100K, c, quarantineBody(100<<10, true)); err != nil {
			return fail(err)
		}
	}
	var big qLoad
	if *flagQBig > 0 {
		if err := big.run(addrs, 1<<41, *flagQBig, min(*flagQBig, 3), quarantineBody(1<<20, true)); err != nil {
			return fail(err)
		}
	}
	select {
	case <-sk.done:
	case <-time.After(*flagDeliverWait):
		return fail(fmt.Errorf("sink received %d of %d clean messages", sk.count.Load(), n))
	}

	// Every node applied everything; then the state's size and snapshots.
	leader, commit, err := qc.caughtUp(qc.nodes, 60*time.Second)
	if err != nil {
		return fail(err)
	}
	var kept float64
	var sizes []string
	var snapCount, snapSum float64
	var snapHist histogram
	for _, m := range qc.nodes {
		mt, err := scrape(m.http)
		if err != nil {
			return fail(err)
		}
		for k, v := range mt {
			if strings.HasPrefix(k, "mxgate_quarantine_writes_total{") && strings.Contains(k, `result="ok"`) {
				kept += v
			}
		}
		s, err := qStatusOf(m)
		if err != nil {
			return fail(err)
		}
		sizes = append(sizes, fmt.Sprintf("%s %.1f MiB (held %.0f, %.1f MiB compressed bodies)", s.Node, float64(s.FSMSizeBytes)/(1<<20),
			mt["mxgate_quarantine_held"], mt["mxgate_quarantine_bytes"]/(1<<20)))
		snapCount += mt["mxgate_raft_snapshot_duration_seconds_count"]
		snapSum += mt["mxgate_raft_snapshot_duration_seconds_sum"]
		snapHist = snapHist.combine(mt.histogram("mxgate_raft_snapshot_duration_seconds"), 1)
	}
	if int(kept) != n+*flagQBig+*flagQ100K {
		fmt.Printf("bench: quarantine: WARNING: the nodes counted %.0f quarantine writes, the clients sent %d spam messages\n", kept, n+*flagQBig+*flagQ100K)
	}
	fl, err := qc.fill(addrs, c)
	if err != nil {
		return fail(err)
	}
	loadCommit := commit
	if fl.commit > 0 {
		commit = fl.commit
	}

	// A fourth node joins: the leader's log is compacted, so it gets the
	// snapshot.
	fmt.Println("bench: quarantine: a fourth node joins")
	t0 := time.Now()
	m4, err := qc.addNode(sk.addr(), spamConf, c)
	if err != nil {
		return fail(err)
	}
	ready := time.Since(t0)
	var installed time.Duration
	err = pollUntil(120*time.Second, func() (bool, string) {
		if installed == 0 {
			if b, _ := os.ReadFile(filepath.Join(m4.dir, "mxgate.log")); strings.Contains(string(b), "Installed remote snapshot") {
				installed = time.Since(t0)
			}
		}
		s, err := qStatusOf(m4)
		if err != nil {
			return false, err.Error()
		}
		return installed > 0 && s.AppliedIndex >= commit, fmt.Sprintf("%s applied %d of %d, snapshot installed: %v", s.Node, s.AppliedIndex, commit, installed > 0)
	})
	if err != nil {
		return fail(err)
	}
	caught := time.Since(t0)
	s4, _ := qStatusOf(m4)

	fmt.Println()
	fmt.Printf("quarantine through a 3-node cluster, %d clients, %d messages each of %d bytes in %d interleaved slices\n", c, n, *flagQSize, rounds)
	fmt.Printf("%-30s %8s %8s %10s %10s\n", "load", "msgs", "msg/s", "p50", "p99")
	for _, l := range []struct {
		name string
		l    *qLoad
	}{{"quarantined (Raft commit)", &spam}, {"delivered (spooled)", &clean}, {"quarantined, 100 KB", &mid},
		{"quarantined, 1 MB", &big}, {"quarantined, 4 MB (fill)", &fl.load}} {
		if l.l.msgs() == 0 {
			continue
		}
		fmt.Printf("%-30s %8d %8.1f %10s %10s\n", l.name, l.l.msgs(), l.l.rate(), fmtDur(l.l.percentile(50)), fmtDur(l.l.percentile(99)))
	}
	fmt.Println("(msg/s: messages per second driven, first MAIL to last 250 of each slice; p50/p99: end of DATA to 250)")
	fmt.Printf("bench: quarantined/delivered rate ratio %.2f\n", spam.rate()/clean.rate())
	fmt.Printf("bench: replicated state after the load (leader %s, commit index %d): %s\n", leader, loadCommit, strings.Join(sizes, "; "))
	if snapCount > 0 {
		fmt.Printf("bench: snapshots during the load (MXGATE_RAFT_SNAPSHOT_THRESHOLD=%d): %.0f over the 3 nodes, mean %s, p99 %s\n",
			*flagQThreshold, snapCount, fmtDur(time.Duration(snapSum/snapCount*float64(time.Second))), fmtDur(snapHist.quantile(0.99)))
	}
	fmt.Printf("bench: a fourth node joining: ready (/readyz) in %s, leader's snapshot installed %s after its start, caught up to index %d in %s (its state %.1f MiB)\n",
		fmtDur(ready), fmtDur(installed), commit, fmtDur(caught), float64(s4.FSMSizeBytes)/(1<<20))
	if fl.commit > 0 {
		fmt.Println()
		fmt.Printf("quarantine snapshot and restore, 3-node cluster, %.1f MiB of compressed bodies (%.0f held, leader's state %.1f MiB)\n",
			fl.bodies/(1<<20), fl.held, float64(fl.state)/(1<<20))
		fmt.Printf("%-27s %11s %10s %10s\n", "step", "time", "min", "max")
		fmt.Printf("%-27s %11s %10s %10s\n", "snapshot (each node)", fmtDur(fl.snapMean), fmtDur(fl.snapMin), fmtDur(fl.snapMax))
		fmt.Printf("%-27s %11s\n", "restore: snapshot installed", fmtDur(installed))
		fmt.Printf("%-27s %11s\n", "restore: caught up", fmtDur(caught))
		fmt.Printf("%-27s %11s %10s\n", "fill (4 MB messages)", fmtDur(fl.took), fmt.Sprintf("%.1fMiB/s", fl.bodies/(1<<20)/fl.took.Seconds()))
		fmt.Println("(snapshot: mxgate_raft_snapshot_duration_seconds of the first snapshot each node took after the fill,")
		fmt.Println(" mean over the 3 nodes; restore: a fourth node started with an empty data dir, to the leader's snapshot")
		fmt.Println(" installed (its log) and to the leader's commit index applied; fill: MiB/s of compressed bodies)")
	}
	return nil
}

// qFill is the fill's measurements.
type qFill struct {
	load                       qLoad
	took                       time.Duration
	commit                     uint64
	bodies, held               float64
	state                      int64
	snapMean, snapMin, snapMax time.Duration
}

// fill quarantines 4 MB spam messages until -quarantine-fill-mib of
// compressed bodies are held, then makes each node take a snapshot of
// the whole state (more than MXGATE_RAFT_SNAPSHOT_THRESHOLD entries of
// small spam after it) and reads its duration.
func (qc *quarantineCluster) fill(addrs []string, c int) (qFill, error) {
	var fl qFill
	if *flagQFillMiB <= 0 {
		return fl, nil
	}
	body := quarantineBody(4<<20, true)
	bodies := func() (float64, error) {
		mt, err := scrape(qc.nodes[0].http)
		return mt["mxgate_quarantine_bytes"], err
	}
	fmt.Printf("bench: quarantine: filling to %d MiB of compressed bodies with 4 MB messages\n", *flagQFillMiB)
	t0 := time.Now()
	for next := int64(1 << 43); ; next += 16 {
		b, err := bodies()
		if err != nil {
			return fl, err
		}
		if b >= float64(*flagQFillMiB)*(1<<20) {
			break
		}
		if err := fl.load.run(addrs, next, 16, min(c, 8), body); err != nil {
			return fl, err
		}
	}
	fl.took = time.Since(t0)
	_, commit, err := qc.caughtUp(qc.nodes, 120*time.Second)
	if err != nil {
		return fl, err
	}
	type snap struct{ count, sum float64 }
	before := map[string]snap{}
	for _, m := range qc.nodes {
		mt, err := scrape(m.http)
		if err != nil {
			return fl, err
		}
		before[m.http] = snap{mt["mxgate_raft_snapshot_duration_seconds_count"], mt["mxgate_raft_snapshot_duration_seconds_sum"]}
	}
	var push qLoad
	if err := push.run(addrs, 1<<44, *flagQThreshold+16, c, quarantineBody(1024, true)); err != nil {
		return fl, err
	}
	fl.snapMin = time.Hour
	var sum time.Duration
	for _, m := range qc.nodes {
		var d time.Duration
		err := pollUntil(180*time.Second, func() (bool, string) {
			s, err := qStatusOf(m)
			if err != nil {
				return false, err.Error()
			}
			mt, err := scrape(m.http)
			if err != nil {
				return false, err.Error()
			}
			b := before[m.http]
			n := mt["mxgate_raft_snapshot_duration_seconds_count"] - b.count
			if s.LastSnapshotIndex < commit || n < 1 {
				return false, fmt.Sprintf("%s: last snapshot index %d, fill committed at %d", s.Node, s.LastSnapshotIndex, commit)
			}
			// The first snapshot after the fill: with more than one,
			// their mean.
			d = time.Duration((mt["mxgate_raft_snapshot_duration_seconds_sum"] - b.sum) / n * float64(time.Second))
			if s.State == "leader" {
				fl.state = s.FSMSizeBytes
				fl.held = mt["mxgate_quarantine_held"]
				fl.bodies = mt["mxgate_quarantine_bytes"]
			}
			return true, ""
		})
		if err != nil {
			return fl, fmt.Errorf("snapshot after the fill: %w", err)
		}
		sum += d
		fl.snapMin, fl.snapMax = min(fl.snapMin, d), max(fl.snapMax, d)
	}
	fl.snapMean = sum / time.Duration(len(qc.nodes))
	_, fl.commit, err = qc.caughtUp(qc.nodes, 120*time.Second)
	return fl, err
}

// quarantineBody is a message after its Message-ID header, ending in
// "\r\n.\r\n", size bytes in all, its text base64 of random bytes (about
// as compressible as mail with attachments: zstd keeps nearly all); spam has
// the GTUBE line.
func quarantineBody(size int, spam bool) []byte {
	var b strings.Builder
	b.WriteString("From: <" + sender + ">\r\nTo: <" + recipient + ">\r\n")
	b.WriteString("Subject: mxgate quarantine bench\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	if spam {
		b.WriteString(gtubeLine)
	} else {
		b.WriteString(strings.Repeat("-", len(gtubeLine)-2) + "\r\n")
	}
	raw := make([]byte, 57)
	fill := size - len(messageID(0)) - b.Len() - 3
	for fill >= 78 {
		rand.Read(raw)
		b.WriteString(base64.StdEncoding.EncodeToString(raw) + "\r\n")
		fill -= 78
	}
	if fill > 2 {
		b.WriteString(strings.Repeat("x", fill-2) + "\r\n")
	}
	b.WriteString(".\r\n")
	return []byte(b.String())
}

// qLoad accumulates the slices of one kind of load.
type qLoad struct {
	driven    time.Duration
	latencies []time.Duration
}

func (l *qLoad) msgs() int { return len(l.latencies) }

func (l *qLoad) rate() float64 { return float64(len(l.latencies)) / l.driven.Seconds() }

func (l *qLoad) percentile(p int) time.Duration {
	return loadResult{latencies: l.latencies}.percentile(p)
}

// run sends n messages numbered from first over c connections spread over
// addrs, each expecting 250 at the end of DATA.
func (l *qLoad) run(addrs []string, first int64, n, c int, body []byte) error {
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		res   loadResult
		errs  []error
		start = time.Now()
	)
	for i := range c {
		wg.Go(func() {
			s, err := sendSession(addrs[i%len(addrs)], i, first, first+int64(n), &next, body)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("connection %d to %s: %w", i, addrs[i%len(addrs)], err))
			}
			res.latencies = append(res.latencies, s.latencies...)
			if s.end.After(res.end) {
				res.end = s.end
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return errs[0]
	}
	if len(res.latencies) != n {
		return fmt.Errorf("sent %d of %d messages", len(res.latencies), n)
	}
	l.driven += res.end.Sub(start)
	l.latencies = append(l.latencies, res.latencies...)
	slices.Sort(l.latencies)
	return nil
}

// qStatus is the part of GET /api/v1/cluster/status this scenario reads.
type qStatus struct {
	Node              string `json:"node"`
	State             string `json:"state"`
	Leader            string `json:"leader"`
	CommitIndex       uint64 `json:"commit_index"`
	AppliedIndex      uint64 `json:"applied_index"`
	LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	FSMSizeBytes      int64  `json:"fsm_size_bytes"`
}

func qStatusOf(m *mxgate) (qStatus, error) {
	var s qStatus
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + m.http + "/api/v1/cluster/status")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("cluster status: %s", resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// pollUntil calls cond every 20ms until it holds or d has passed.
func pollUntil(d time.Duration, cond func() (bool, string)) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(d); ; {
		ok, seen := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %v: %s", d, seen)
		}
		<-tick.C
	}
}

// quarantineCluster is the scenario's nodes, their TLS files and gossip
// addresses.
type quarantineCluster struct {
	bin, dir, tlsDir string
	gossip           []string
	nodes            []*mxgate
	stop             func()
}

func startQuarantineCluster(sinkAddr, spamConf string, clients int) (_ *quarantineCluster, err error) {
	bin, err := filepath.Abs(*flagMxgate)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mxgate-bench-quarantine-")
	if err != nil {
		return nil, err
	}
	qc := &quarantineCluster{bin: bin, dir: dir, tlsDir: filepath.Join(dir, "tls")}
	qc.stop = onCleanup(func() {
		mxgateTarget(qc.nodes).stop()
		os.RemoveAll(dir)
	})
	defer func() {
		if err != nil {
			if len(qc.nodes) > 0 && !interrupted.Load() {
				err = fmt.Errorf("%w\nlogs:\n%s", err, mxgateTarget(qc.nodes).logTail())
			}
			qc.stop()
		}
	}()
	names := []string{"mx1", "mx2", "mx3"}
	if err := qc.tlsInit(names...); err != nil {
		return nil, err
	}
	qc.gossip = make([]string, len(names))
	for i := range qc.gossip {
		if qc.gossip[i], err = freeGossipAddr(); err != nil {
			return nil, err
		}
	}
	for i, name := range names {
		var join []string
		for j, g := range qc.gossip {
			if j != i {
				join = append(join, g)
			}
		}
		if _, err := qc.start(sinkAddr, spamConf, clients, name, qc.gossip[i], join); err != nil {
			return nil, err
		}
	}
	leader, err := waitLeader(qc.nodes, 60*time.Second)
	if err != nil {
		return nil, err
	}
	fmt.Printf("bench: quarantine cluster formed, leader %s\n", leader)
	return qc, nil
}

func (qc *quarantineCluster) tlsInit(names ...string) error {
	if out, err := exec.Command(qc.bin, "cluster", "tls-init", "-dir", qc.tlsDir, "-nodes", strings.Join(names, ",")).CombinedOutput(); err != nil {
		return fmt.Errorf("mxgate cluster tls-init: %v %s", err, out)
	}
	return nil
}

// start starts one node (bootstrap_expect 3) and adds it to qc.nodes.
func (qc *quarantineCluster) start(sinkAddr, spamConf string, clients int, name, gossip string, join []string) (*mxgate, error) {
	raftAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	quoted := make([]string, len(join))
	for i, j := range join {
		quoted[i] = fmt.Sprintf("%q", j)
	}
	conf := fmt.Sprintf(`cluster:
  gossip: %q
  raft: %q
  join: [%s]
  bootstrap_expect: 3
  secret_file: %q
  tls: {ca: %q, cert: %q, key: %q}
`, gossip, raftAddr, strings.Join(quoted, ", "), filepath.Join(qc.tlsDir, "gossip.key"),
		filepath.Join(qc.tlsDir, "ca.pem"), filepath.Join(qc.tlsDir, name+".pem"), filepath.Join(qc.tlsDir, name+"-key.pem"))
	m, err := startMxgate(sinkAddr, mxgateOptions{name: name, perIP: clients, spam: spamConf, cluster: conf})
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", name, err)
	}
	qc.nodes = append(qc.nodes, m)
	return m, nil
}

// addNode starts mx4, joining the first three.
func (qc *quarantineCluster) addNode(sinkAddr, spamConf string, clients int) (*mxgate, error) {
	if err := qc.tlsInit("mx4"); err != nil {
		return nil, err
	}
	g, err := freeGossipAddr()
	if err != nil {
		return nil, err
	}
	return qc.start(sinkAddr, spamConf, clients, "mx4", g, qc.gossip)
}

// caughtUp waits until every node has applied the leader's commit index
// as of now, and returns the leader and that index.
func (qc *quarantineCluster) caughtUp(nodes []*mxgate, d time.Duration) (string, uint64, error) {
	var leader string
	var commit uint64
	for _, m := range nodes {
		s, err := qStatusOf(m)
		if err != nil {
			return "", 0, err
		}
		if s.State == "leader" {
			leader, commit = s.Node, s.CommitIndex
		}
	}
	if leader == "" {
		return "", 0, fmt.Errorf("no leader among the nodes")
	}
	err := pollUntil(d, func() (bool, string) {
		var seen []string
		for _, m := range nodes {
			s, err := qStatusOf(m)
			if err != nil {
				return false, err.Error()
			}
			if s.AppliedIndex < commit {
				seen = append(seen, fmt.Sprintf("%s applied %d", s.Node, s.AppliedIndex))
			}
		}
		return len(seen) == 0, fmt.Sprintf("commit %d: %s", commit, strings.Join(seen, ", "))
	})
	return leader, commit, err
}
