// Command bench compares mxgate with Postfix relaying the same load.
//
// For each system under test it starts a sink on loopback as the next hop,
// sends N messages of -size bytes over C connections to the system's SMTP
// listener, and reports the accept rate (first MAIL to last 250), the
// latency from the end of DATA to the 250, the time until the sink has
// received every message, and the peak RSS of the system's processes. The
// same load sent straight into the sink is printed as the "loopback limit".
//
//	go build -o bin/mxgate ./cmd/mxgate && go run ./e2e/bench -mxgate bin/mxgate
//
// Then the clamd scenario (scan.go), the full-pipeline scenarios against
// Postfix with rspamd (full.go: through SMTP, and the filters alone on the
// SpamAssassin corpus), the cluster greylisting scenario (cluster.go) and
// the replicated quarantine (quarantine.go); -only runs one of them.
//
// It must run as root (Postfix drops privileges to its own user).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	flagN           = flag.Int("n", 5000, "messages to send")
	flagC           = flag.Int("c", 20, "concurrent SMTP connections")
	flagSize        = flag.Int("size", 4096, "message size in bytes (headers included)")
	flagSkipPostfix = flag.Bool("skip-postfix", false, "do not run Postfix")
	flagSkipScan    = flag.Bool("skip-scan", false, "do not run the clamd scenario")
	flagMxgate      = flag.String("mxgate", "", "path of the mxgate binary (empty: skip mxgate)")
	flagDeliverWait = flag.Duration("deliver-timeout", 2*time.Minute, "how long to wait, after the last 250, for the sink to receive every message")

	flagOnly            = flag.String("only", "", "run only this scenario: relay, scan, full, filter, cluster or quarantine (empty: all)")
	flagSkipFull        = flag.Bool("skip-full", false, "do not run the full-pipeline scenarios (full, filter: rspamd)")
	flagFullRounds      = flag.Int("full-rounds", 5, "full and filter scenarios: in how many slices each system is driven, taking turns")
	flagFilterC         = flag.Int("filter-c", 16, "filter scenario: messages checked at once")
	flagSkipCluster     = flag.Bool("skip-cluster", false, "do not run the cluster greylisting scenario")
	flagSkipPostgrey    = flag.Bool("skip-postgrey", false, "leave Postfix + postgrey out of the cluster scenario")
	flagClusterC        = flag.Int("cluster-c", 24, "cluster scenario: concurrent SMTP clients (spread over the nodes)")
	flagClusterDuration = flag.Duration("cluster-duration", 10*time.Second, "cluster scenario: how long each setup is driven in all")
	flagClusterRounds   = flag.Int("cluster-rounds", 5, "cluster scenario: in how many slices, taking turns with the other setups")
)

// scenarios are the values of -only, in the order they run.
var scenarios = []string{"relay", "scan", "full", "filter", "cluster", "quarantine"}

// scenario reports whether the scenario name runs.
func scenario(name string) bool { return *flagOnly == "" || *flagOnly == name }

// result is one row of the table.
type result struct {
	name      string
	load      loadResult
	delivered time.Time // when the sink received the N-th message
	rssKB     int64     // peak RSS of the system's processes; 0: not measured
	// scanP50 and scanP99 are mxgate's clamd scan durations; 0: no scans.
	scanP50, scanP99 time.Duration
}

// scanReporter is a system that can report its virus-scan latency.
type scanReporter interface {
	scanQuantiles() (p50, p99 time.Duration, err error)
}

func (r result) acceptRate() float64 {
	return float64(len(r.load.latencies)) / r.load.end.Sub(r.load.start).Seconds()
}

func (r result) deliverRate() float64 {
	return float64(len(r.load.latencies)) / r.delivered.Sub(r.load.start).Seconds()
}

func main() {
	flag.Parse()
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		s := <-sig
		interrupted.Store(true)
		fmt.Fprintf(os.Stderr, "bench: %v, cleaning up\n", s)
		runCleanups()
		os.Exit(1)
	}()
	err := run()
	runCleanups()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: FAIL:", err)
		os.Exit(1)
	}
}

func run() error {
	if *flagN < 1 || *flagC < 1 || *flagSize < 512 {
		return fmt.Errorf("need -n >= 1, -c >= 1, -size >= 512")
	}
	if *flagOnly != "" && !slices.Contains(scenarios, *flagOnly) {
		return fmt.Errorf("-only %q: want one of %s", *flagOnly, strings.Join(scenarios, ", "))
	}
	if *flagFullRounds < 1 || *flagFullRounds > *flagN || *flagFilterC < 1 {
		return fmt.Errorf("need -full-rounds from 1 to -n, -filter-c >= 1")
	}
	if *flagClusterC < 1 || *flagClusterRounds < 1 || *flagClusterDuration > 10*time.Minute ||
		*flagClusterDuration < time.Duration(*flagClusterRounds)*100*time.Millisecond {
		return fmt.Errorf("need -cluster-c >= 1, -cluster-rounds >= 1, -cluster-duration of 100ms or more per round and at most 10m")
	}
	if scenario("relay") {
		if err := benchRelay(); err != nil {
			return err
		}
	}
	if scenario("scan") && *flagMxgate != "" && !*flagSkipScan {
		if err := benchScan(); err != nil {
			return err
		}
	}
	if (scenario("full") || scenario("filter")) && *flagMxgate != "" && !*flagSkipFull {
		if err := benchFullPipeline(); err != nil {
			return err
		}
	}
	if scenario("cluster") && !*flagSkipCluster {
		if err := benchCluster(); err != nil {
			return err
		}
	}
	if scenario("quarantine") {
		return benchQuarantine()
	}
	return nil
}

// benchFullPipeline runs the full and filter scenarios on one set of
// services.
func benchFullPipeline() error {
	st, err := startFullStack()
	if err != nil {
		return err
	}
	defer st.stop()
	if scenario("full") {
		if err := benchFullSMTP(st); err != nil {
			return err
		}
	}
	if scenario("filter") {
		return benchFilter(st)
	}
	return nil
}

// benchRelay is the relay scenario: the same load straight into the sink,
// through Postfix and through mxgate, neither scanning.
func benchRelay() error {
	fmt.Printf("bench: %d messages of %d bytes over %d connections\n", *flagN, *flagSize, *flagC)
	var results []result

	r, err := bench("loopback limit", nil)
	if err != nil {
		return err
	}
	results = append(results, r)

	var pf, mx *result
	if !*flagSkipPostfix {
		r, err := bench("postfix", startPostfix)
		if err != nil {
			return err
		}
		results = append(results, r)
		pf = &r
	}
	if *flagMxgate != "" {
		// Postfix relays without scanning: so does this mxgate run.
		r, err := bench("mxgate", mxgateStarter("", 0))
		if err != nil {
			return err
		}
		results = append(results, r)
		mx = &r
	} else {
		fmt.Println("bench: mxgate skipped (no -mxgate PATH)")
	}

	printTable(results)
	if pf != nil && mx != nil {
		fmt.Printf("bench: mxgate/postfix accept ratio %.2f, delivered ratio %.2f\n",
			mx.acceptRate()/pf.acceptRate(), mx.deliverRate()/pf.deliverRate())
	}
	return nil
}

// system is a running system under test.
type system interface {
	addr() string    // its SMTP listener
	pids() []int     // its processes now, for the RSS sampler
	stop() error     // stops it and removes its files
	logTail() string // the end of its log, for failure reports
}

// bench runs the load against one system (nil start: straight into the sink).
func bench(name string, start func(sinkAddr string) (system, error)) (result, error) {
	return benchLoad(name, start, *flagN, *flagC, *flagSize)
}

// benchLoad is bench with its own load: n messages of size bytes over c
// connections.
func benchLoad(name string, start func(sinkAddr string) (system, error), n, c, size int) (result, error) {
	res := result{name: name}
	sk, err := startSink(int64(n))
	if err != nil {
		return res, err
	}
	defer sk.close()
	target := sk.addr()
	var sys system
	var rss *rssSampler
	if start != nil {
		fmt.Printf("bench: starting %s\n", name)
		sys, err = start(sk.addr())
		if err != nil {
			return res, fmt.Errorf("%s: %w", name, err)
		}
		stop := onCleanup(func() {
			if err := sys.stop(); err != nil {
				fmt.Fprintf(os.Stderr, "bench: stopping %s: %v\n", name, err)
			}
		})
		defer stop()
		target = sys.addr()
		rss = sampleRSS(sys.pids, 100*time.Millisecond)
	}
	fail := func(err error) (result, error) {
		if sys != nil && !interrupted.Load() {
			fmt.Fprintf(os.Stderr, "bench: %s log tail:\n%s\n", name, sys.logTail())
		}
		return res, fmt.Errorf("%s: %w", name, err)
	}

	fmt.Printf("bench: %s: sending\n", name)
	res.load, err = runLoad(target, n, c, size)
	if err != nil {
		return fail(err)
	}
	select {
	case <-sk.done:
		res.delivered = sk.last
	case <-time.After(*flagDeliverWait):
		return fail(fmt.Errorf("sink received %d of %d messages %v after the last 250",
			sk.count.Load(), n, *flagDeliverWait))
	}
	if rss != nil {
		res.rssKB = rss.stop()
	}
	if sr, ok := sys.(scanReporter); ok {
		if res.scanP50, res.scanP99, err = sr.scanQuantiles(); err != nil {
			return fail(err)
		}
	}
	if got := sk.count.Load(); got != int64(n) {
		fmt.Printf("bench: %s: WARNING: the sink received %d messages for %d sent (duplicates)\n", name, got, n)
	}
	return res, nil
}

func printTable(rs []result) {
	fmt.Println()
	fmt.Printf("%-15s %11s %9s %9s %12s %11s %10s\n",
		"system", "accepted/s", "p50", "p99", "delivered/s", "all in", "peak RSS")
	for _, r := range rs {
		rss := "-"
		if r.rssKB > 0 {
			rss = fmt.Sprintf("%.1f MiB", float64(r.rssKB)/1024)
		}
		fmt.Printf("%-15s %11.1f %9s %9s %12.1f %11s %10s\n", r.name,
			r.acceptRate(), fmtDur(r.load.percentile(50)), fmtDur(r.load.percentile(99)),
			r.deliverRate(), fmtDur(r.delivered.Sub(r.load.start)), rss)
	}
	fmt.Println("(accepted: first MAIL to last 250; p50/p99: end of DATA to 250; delivered: first MAIL to the")
	fmt.Println(" sink's N-th message; peak RSS: sum of VmHWM over the system's processes, shared pages counted per process)")
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%dµs", d.Microseconds())
}

// Cleanups run in reverse order, once, on return from run or on a signal,
// so that a failed or interrupted bench leaves no processes or directories.
var (
	interrupted atomic.Bool
	cleanupMu   sync.Mutex
	cleanups    []*func()
)

// onCleanup registers f and returns a function that runs it now (once).
func onCleanup(f func()) func() {
	var once sync.Once
	g := func() { once.Do(f) }
	cleanupMu.Lock()
	cleanups = append(cleanups, &g)
	cleanupMu.Unlock()
	return g
}

func runCleanups() {
	cleanupMu.Lock()
	cs := cleanups
	cleanups = nil
	cleanupMu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		(*cs[i])()
	}
}
