package main

import (
	"bufio"
	"cmp"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// mxgate runs "mxgate serve -config FILE" as a child process with its data
// dir in a temp dir and its output in DIR/mxgate.log.
type mxgate struct {
	dir, inbound, http string
	cmd                *exec.Cmd
	exited             chan struct{} // closed when the process has exited
}

const mxgateConfig = `node: {name: bench1, data_dir: %q}
listen: {inbound: %q, relay: %q, http: %q}
hostname: mx1.bench.test
domains: [bench.test]
backends: [%q]
mynetworks: ["10.255.255.0/24"]
queue: {retry_min: 1s, retry_max: 10s}
limits: {per_ip_connections: %d, max_message_bytes: %d}
clamav: %s
greylist: {enabled: false}
`

// mxgateStarter starts mxgate scanning through the clamd at clamavAddr
// ("" : scanning off), accepting messages up to maxBytes (0: 36 MB).
func mxgateStarter(clamavAddr string, maxBytes int) func(sinkAddr string) (system, error) {
	return func(sinkAddr string) (system, error) { return startMxgate(sinkAddr, clamavAddr, maxBytes) }
}

func startMxgate(sinkAddr, clamavAddr string, maxBytes int) (sys system, err error) {
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
	m := &mxgate{dir: dir, exited: make(chan struct{})}
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
	if clamavAddr != "" {
		clamavConf = fmt.Sprintf("{address: %q, timeout: 60s, max_connections: 8}", clamavAddr)
	}
	conf := fmt.Sprintf(mxgateConfig, filepath.Join(dir, "data"), addrs[0], addrs[1], addrs[2],
		sinkAddr, max(*flagC, 20), cmp.Or(maxBytes, 36700160), clamavConf)
	confFile := filepath.Join(dir, "mxgate.yaml")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "mxgate.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	m.cmd = exec.Command(bin, "serve", "-config", confFile)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if err := m.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { m.cmd.Wait(); close(m.exited) }()

	readyz := "http://" + addrs[2] + "/readyz"
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case <-m.exited:
			return nil, fmt.Errorf("mxgate exited during startup: %v", m.cmd.ProcessState)
		default:
		}
		resp, err := client.Get(readyz)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s not 200 after 30s (last: %v)", readyz, err)
		}
		<-tick.C // poll interval
	}
}

func (m *mxgate) addr() string { return m.inbound }

func (m *mxgate) pids() []int { return processTree(m.cmd.Process.Pid) }

func (m *mxgate) logTail() string { return tail(filepath.Join(m.dir, "mxgate.log"), 40) }

// stop sends SIGTERM, SIGKILL after 10 s, and removes the temp dir.
func (m *mxgate) stop() error {
	var err error
	if m.cmd != nil && m.cmd.Process != nil {
		m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.exited:
		case <-time.After(10 * time.Second):
			m.cmd.Process.Kill()
			<-m.exited
			err = fmt.Errorf("mxgate did not stop within 10s of SIGTERM; killed")
		}
	}
	if e := os.RemoveAll(m.dir); e != nil && err == nil {
		err = e
	}
	return err
}

// scanQuantiles reads mxgate_clamav_scan_duration_seconds from /metrics and
// estimates its p50 and p99 as Prometheus' histogram_quantile does: linear
// interpolation within the bucket holding the rank.
func (m *mxgate) scanQuantiles() (p50, p99 time.Duration, err error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + m.http + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	type bucket struct{ le, count float64 }
	var buckets []bucket
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	const prefix = `mxgate_clamav_scan_duration_seconds_bucket{le="`
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		rest := line[len(prefix):]
		end := strings.Index(rest, `"}`)
		if end < 0 {
			continue
		}
		le, err1 := strconv.ParseFloat(rest[:end], 64)
		count, err2 := strconv.ParseFloat(strings.TrimSpace(rest[end+2:]), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		buckets = append(buckets, bucket{le, count})
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if len(buckets) == 0 || buckets[len(buckets)-1].count == 0 {
		return 0, 0, nil // scanning off: nothing to report
	}
	total := buckets[len(buckets)-1].count
	q := func(p float64) time.Duration {
		rank := p * total
		lower, below := 0.0, 0.0
		for _, b := range buckets {
			if b.count >= rank {
				if math.IsInf(b.le, 1) {
					return time.Duration(lower * float64(time.Second))
				}
				frac := 0.0
				if b.count > below {
					frac = (rank - below) / (b.count - below)
				}
				return time.Duration((lower + (b.le-lower)*frac) * float64(time.Second))
			}
			lower, below = b.le, b.count
		}
		return time.Duration(lower * float64(time.Second))
	}
	return q(0.50), q(0.99), nil
}
