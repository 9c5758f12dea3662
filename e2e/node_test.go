package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/filter/clamav/clamdtest"
	"github.com/mxgate/mxgate/internal/dnstest"
	"github.com/mxgate/mxgate/internal/logtest"
	"github.com/mxgate/mxgate/internal/promscrape"
	"github.com/mxgate/mxgate/internal/testport"
	"github.com/mxgate/mxgate/internal/wait"
)

// nodeOptions are the parts of a node's configuration a test varies; zero
// values take the suite's defaults.
type nodeOptions struct {
	backends         []string
	transports       map[string]string
	maxMessageBytes  int64
	maxRecipients    int
	perIPConnections int
	maxConnections   int
	// limits is added to the limits section as YAML flow entries, e.g.
	// "command_timeout: 2s, hard_error_limit: 5".
	limits string
	// clamav is the clamav.address; empty starts a real clamd with the
	// test signatures for this node (every message is scanned, as in
	// production).
	clamav string
	// greylist is the greylist section; empty turns greylisting off, so
	// that tests of other behaviour are not greylisted.
	greylist string
	// mynetworks replaces the default ["10.9.9.0/24"] (no loopback
	// client is trusted by default).
	mynetworks []string
	// name is node.name (the Raft server ID and gossip name of a cluster
	// node); empty gives a fresh e2eN.
	name string
	// cluster adds a cluster section (see cluster_helpers_test.go); nil
	// runs the node standalone.
	cluster *clusterOptions
	// env is added to the process environment, on every start.
	env []string
	// dns is dns.resolver; empty starts a DNS server for this node that
	// knows no name (every lookup answered NXDOMAIN at once, as a machine
	// with no network would have it), so sender authentication and the
	// other DNS checks run, hermetic and fast.
	dns string
	// extra is YAML added at the end of the file (sections no other
	// option writes: spam, dnsbl...).
	extra string
}

// node is one mxgate process with its config file, data dir and log.
type node struct {
	t          testing.TB
	name       string
	dir        string // t.TempDir(): config, log, data
	configPath string
	logPath    string
	inbound    string // host:port
	relay      string
	http       string
	env        []string // extra environment, kept for restarts

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	waitErr error
}

var nodeSeq struct {
	sync.Mutex
	n int
}

// newNode writes a config with fresh ports; it does not start the process.
func newNode(t testing.TB, opts nodeOptions) *node {
	t.Helper()
	nodeSeq.Lock()
	nodeSeq.n++
	seq := nodeSeq.n
	nodeSeq.Unlock()
	dir := t.TempDir()
	name := opts.name
	if name == "" {
		name = fmt.Sprintf("e2e%d", seq)
	}
	n := &node{
		t:          t,
		name:       name,
		dir:        dir,
		configPath: filepath.Join(dir, "mxgate.yaml"),
		logPath:    filepath.Join(dir, "mxgate.log"),
		inbound:    freeAddr(t),
		relay:      freeAddr(t),
		http:       freeAddr(t),
		env:        opts.env,
	}
	if opts.clamav == "" {
		opts.clamav = clamdtest.StartServer(t, clamdtest.Options{SigDir: clamdtest.SigDir(t)}).TCPAddress()
	}
	if err := os.WriteFile(n.configPath, []byte(n.configYAML(opts)), 0o644); err != nil {
		t.Fatalf("e2e: write config: %v", err)
	}
	t.Cleanup(func() {
		// A recovered panic is a bug even when every reply was right.
		if v, ok, err := n.metric("mxgate_gateway_panics_total"); err == nil && ok && v > 0 {
			t.Errorf("e2e: node %s recovered %v panics (mxgate_gateway_panics_total)", n.name, v)
		}
		n.stop()
		if t.Failed() {
			t.Logf("e2e: node %s: last lines of its log (%s):\n%s", n.name, n.logPath, n.logTail(60))
		}
	})
	return n
}

// startNode writes a config and starts the node, waiting until it is ready.
func startNode(t testing.TB, opts nodeOptions) *node {
	t.Helper()
	n := newNode(t, opts)
	n.start()
	return n
}

func (n *node) configYAML(o nodeOptions) string {
	if o.maxMessageBytes == 0 {
		o.maxMessageBytes = 1048576
	}
	if o.maxRecipients == 0 {
		o.maxRecipients = 5
	}
	if o.perIPConnections == 0 {
		o.perIPConnections = 50
	}
	if o.maxConnections == 0 {
		o.maxConnections = 200
	}
	var b strings.Builder
	fmt.Fprintf(&b, "node: {name: %s, data_dir: %q}\n", n.name, filepath.Join(n.dir, "data"))
	fmt.Fprintf(&b, "listen: {inbound: %q, relay: %q, http: %q}\n", n.inbound, n.relay, n.http)
	fmt.Fprintf(&b, "hostname: mx1.e2e.test\n")
	fmt.Fprintf(&b, "domains: [e2e.test]\n")
	fmt.Fprintf(&b, "backends: [%s]\n", quoteList(o.backends))
	if len(o.mynetworks) == 0 {
		o.mynetworks = []string{"10.9.9.0/24"}
	}
	fmt.Fprintf(&b, "mynetworks: [%s]\n", quoteList(o.mynetworks))
	extra := ""
	if o.limits != "" {
		extra = ", " + o.limits
	}
	fmt.Fprintf(&b, "limits: {max_message_bytes: %d, max_recipients: %d, per_ip_connections: %d, max_connections: %d%s}\n",
		o.maxMessageBytes, o.maxRecipients, o.perIPConnections, o.maxConnections, extra)
	fmt.Fprintf(&b, "queue: {retry_min: 1s, retry_max: 2s, lifetime: 1h}\n")
	fmt.Fprintf(&b, "clamav: {address: %q, timeout: 10s}\n", o.clamav)
	if o.greylist == "" {
		o.greylist = "{enabled: false}"
	}
	fmt.Fprintf(&b, "greylist: %s\n", o.greylist)
	if o.dns == "" {
		o.dns = dnstest.Start(n.t, dnstest.Zone{}).Addr()
	}
	fmt.Fprintf(&b, "dns: {resolver: %q}\n", o.dns)
	b.WriteString(o.extra)
	if len(o.transports) > 0 {
		var doms []string
		for d := range o.transports {
			doms = append(doms, d)
		}
		sort.Strings(doms)
		b.WriteString("transports:\n")
		for _, d := range doms {
			fmt.Fprintf(&b, "  %s: %q\n", d, o.transports[d])
		}
	}
	if o.cluster != nil {
		b.WriteString(o.cluster.yaml(n.name))
	}
	return b.String()
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// start runs `mxgate serve` on the node's config (the same data dir and
// ports on a restart) and waits for GET /readyz to answer 200.
func (n *node) start() {
	n.t.Helper()
	n.launch()
	n.waitReady(30 * time.Second)
}

// launch runs `mxgate serve` without waiting for it to be ready, so that
// several nodes can start at the same moment.
func (n *node) launch() {
	n.t.Helper()
	logf, err := os.OpenFile(n.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		n.t.Fatalf("e2e: open node log: %v", err)
	}
	cmd := exec.Command(mxgateBin, "serve", "-config", n.configPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if len(n.env) > 0 {
		cmd.Env = append(os.Environ(), n.env...)
	}
	// The node dies with the test binary, whatever happens to it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		n.t.Fatalf("e2e: start mxgate: %v", err)
	}
	exited := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		n.mu.Lock()
		n.waitErr = err
		n.mu.Unlock()
		close(exited)
	}()
}

// waitReady polls /readyz until 200, failing early if the process exits.
func (n *node) waitReady(timeout time.Duration) {
	n.t.Helper()
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	client := &http.Client{Timeout: 2 * time.Second}
	last := "no answer yet"
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-exited:
			n.t.Fatalf("e2e: node %s exited before it was ready (%v); log:\n%s", n.name, n.waitErrValue(), n.logTail(30))
		default:
		}
		resp, err := client.Get("http://" + n.http + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("e2e: node %s not ready after %v: %s", n.name, timeout, last)
		}
		select {
		case <-tick.C:
		case <-exited:
		}
	}
}

func (n *node) waitErrValue() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.waitErr
}

// kill9 sends SIGKILL and waits for the process to be gone.
func (n *node) kill9() {
	n.t.Helper()
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		n.t.Fatalf("e2e: node %s still running 10s after SIGKILL", n.name)
	}
}

// stop ends the process: SIGTERM, then SIGKILL if it lingers.
func (n *node) stop() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return
	case <-time.After(5 * time.Second):
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// logTail returns the last lines of the node's stderr (the JSON mail log).
func (n *node) logTail(lines int) string {
	data, err := os.ReadFile(n.logPath)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// logEvents parses the mail log; lines that are not JSON are skipped.
func (n *node) logEvents() []map[string]any {
	data, err := os.ReadFile(n.logPath)
	if err != nil {
		return nil
	}
	return logtest.Parse(data)
}

// findEvents returns the log events with every given key=value (string
// compared).
func (n *node) findEvents(kv ...string) []map[string]any {
	return logtest.Find(n.logEvents(), kv...)
}

// metrics fetches /metrics and returns sample lines keyed by
// `name{labels}` exactly as exposed (labels sorted by the client library).
func (n *node) metrics() (map[string]float64, error) {
	return promscrape.Get(n.http)
}

// metric returns one sample: name with the label pairs given (all of the
// sample's labels, in any order). ok is false when the sample is absent.
func (n *node) metric(name string, labels ...string) (float64, bool, error) {
	all, err := n.metrics()
	if err != nil {
		return 0, false, err
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for key, v := range all {
		kname, klabels := key, ""
		if j := strings.IndexByte(key, '{'); j >= 0 {
			kname, klabels = key[:j], strings.TrimSuffix(key[j+1:], "}")
		}
		if kname != name {
			continue
		}
		got := parseLabels(klabels)
		if len(got) != len(want) {
			continue
		}
		match := true
		for k, wv := range want {
			if got[k] != wv {
				match = false
				break
			}
		}
		if match {
			return v, true, nil
		}
	}
	return 0, false, nil
}

func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return out
		}
		key := s[:eq]
		rest := s[eq+2:]
		var val strings.Builder
		i := 0
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
			}
			val.WriteByte(rest[i])
		}
		out[key] = val.String()
		s = strings.TrimPrefix(rest[min(i+1, len(rest)):], ",")
	}
	return out
}

// waitAtLeast polls a metric until it is at least want.
func (n *node) waitAtLeast(timeout time.Duration, want float64, name string, labels ...string) {
	n.t.Helper()
	wait.For(n.t, timeout, fmt.Sprintf("%s%v >= %v", name, labels, want), func() (bool, string) {
		v, ok, err := n.metric(name, labels...)
		if err != nil || !ok {
			return false, fmt.Sprint("sample absent ", err)
		}
		return v >= want, fmt.Sprintf("value %v", v)
	})
}

// waitMetric polls a metric until it equals want.
func (n *node) waitMetric(timeout time.Duration, want float64, name string, labels ...string) {
	n.t.Helper()
	wait.For(n.t, timeout, fmt.Sprintf("%s%v == %v", name, labels, want), func() (bool, string) {
		v, ok, err := n.metric(name, labels...)
		switch {
		case err != nil:
			return false, err.Error()
		case !ok:
			return false, "sample absent"
		}
		return v == want, fmt.Sprintf("value %v", v)
	})
}

func freeAddr(t testing.TB) string {
	t.Helper()
	addr, err := testport.Addr(false)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// portFree reports whether addr can be bound now.
func portFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}
