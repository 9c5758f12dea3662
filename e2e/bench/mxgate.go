package main

import (
	"cmp"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// mxgate runs "mxgate serve -config FILE" as a child process with its data
// dir in a temp dir and its output in DIR/mxgate.log.
type mxgate struct {
	dir, inbound, http string
	proc               *child
}

const mxgateConfig = `node: {name: %q, data_dir: %q}
listen: {inbound: %q, relay: %q, http: %q}
hostname: %s.bench.test
domains: [bench.test]
backends: [%q]
mynetworks: ["10.255.255.0/24"]
queue: {retry_min: 1s, retry_max: 10s}
limits: {per_ip_connections: %d, max_message_bytes: %d, hard_error_limit: 1000000, junk_command_limit: 1000000}
clamav: %s
greylist: %s
%s
%s`

// mxgateOptions are what the bench's nodes differ in. The zero value is
// the relay scenario's node: no scanning, no spam scoring, no greylisting,
// alone.
type mxgateOptions struct {
	name       string // node.name; "": bench1
	clamavAddr string // the clamd to scan through; "": scanning off
	maxBytes   int    // limits.max_message_bytes; 0: 36 MB
	perIP      int    // limits.per_ip_connections; 0: max(-c, 20)
	greylist   string // the greylist section (YAML flow); "": {enabled: false}
	// cluster is the cluster section, YAML, "cluster:" included; "": the
	// node runs alone (greylist state in memory).
	cluster string
	// spam is spam scoring's sections (spam, dnsbl, bayes, redis, dns),
	// YAML, keys included; "": "spam: {enabled: false}" (spam scoring is
	// on by default, and the relay, scan and greylist scenarios measure
	// what they name without it).
	spam string
}

// mxgateStarter starts mxgate scanning through the clamd at clamavAddr
// ("" : scanning off), accepting messages up to maxBytes (0: 36 MB).
func mxgateStarter(clamavAddr string, maxBytes int) func(sinkAddr string) (system, error) {
	return func(sinkAddr string) (system, error) {
		m, err := startMxgate(sinkAddr, mxgateOptions{clamavAddr: clamavAddr, maxBytes: maxBytes})
		if err != nil {
			return nil, err
		}
		return m, nil
	}
}

// startMxgate starts a node relaying to sinkAddr and waits until its
// /readyz answers 200 (for a clustered node, that is before the cluster
// has a leader).
func startMxgate(sinkAddr string, o mxgateOptions) (_ *mxgate, err error) {
	bin, err := filepath.Abs(*flagMxgate)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("-mxgate: %w", err)
	}
	dir, err := os.MkdirTemp("", "mxgate-bench-mxgate-")
	if err != nil {
		return nil, err
	}
	m := &mxgate{dir: dir}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\nmxgate output:\n%s", err, m.logTail())
			m.stop()
		}
	}()
	var addrs [3]string // inbound, relay, http
	for i := range addrs {
		if addrs[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	m.inbound, m.http = addrs[0], addrs[2]
	// The load comes from one IP: allow all its connections (the default
	// per-IP limit is 20).
	clamavConf := "{enabled: false}"
	if o.clamavAddr != "" {
		// No verdict cache: every message is scanned (the bench's
		// messages differ in their Message-ID anyway).
		clamavConf = fmt.Sprintf("{address: %q, timeout: 60s, max_connections: 8, cache_ttl: 0s}", o.clamavAddr)
	}
	name := cmp.Or(o.name, "bench1")
	conf := fmt.Sprintf(mxgateConfig, name, filepath.Join(dir, "data"), addrs[0], addrs[1], addrs[2], name,
		sinkAddr, cmp.Or(o.perIP, max(*flagC, 20)), cmp.Or(o.maxBytes, 36700160), clamavConf,
		cmp.Or(o.greylist, "{enabled: false}"), cmp.Or(o.spam, "spam: {enabled: false}"), o.cluster)
	confFile := filepath.Join(dir, "mxgate.yaml")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "mxgate.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(bin, "serve", "-config", confFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	if m.proc, err = startChild(cmd); err != nil {
		return nil, err
	}
	readyz := "http://" + addrs[2] + "/readyz"
	client := &http.Client{Timeout: time.Second}
	err = m.proc.waitReady(30*time.Second, 100*time.Millisecond, func() error {
		resp, err := client.Get(readyz)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", readyz, resp.Status)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mxgate %w", err)
	}
	return m, nil
}

func (m *mxgate) addr() string { return m.inbound }

func (m *mxgate) pids() []int { return processTree(m.proc.pid()) }

func (m *mxgate) logTail() string { return tail(filepath.Join(m.dir, "mxgate.log"), 40) }

// stop sends SIGTERM, SIGKILL after 10 s, and removes the temp dir.
func (m *mxgate) stop() error {
	var err error
	if m.proc.stop(10 * time.Second) {
		err = fmt.Errorf("mxgate did not stop within 10s of SIGTERM; killed")
	}
	if e := os.RemoveAll(m.dir); e != nil && err == nil {
		err = e
	}
	return err
}

// scanQuantiles estimates the p50 and p99 of
// mxgate_clamav_scan_duration_seconds from /metrics (0, 0 when nothing was
// scanned).
func (m *mxgate) scanQuantiles() (p50, p99 time.Duration, err error) {
	ms, err := scrape(m.http)
	if err != nil {
		return 0, 0, err
	}
	h := ms.histogram("mxgate_clamav_scan_duration_seconds")
	return h.quantile(0.50), h.quantile(0.99), nil
}
