package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// benchCluster measures greylisting decisions on new triplets, each of
// which the system must store before it answers: three mxgate nodes on
// loopback keeping the greylist in Raft (every new triplet a write
// committed through the leader), against the same load on one node
// keeping it in memory (the in-run baseline), and Postfix asking postgrey
// (when installed).
//
// The machines this runs on are noisy: all setups run at once and are
// driven in turn, -cluster-rounds slices each (the first setup of a round
// rotates), so that a burst of noise lands on every setup alike instead
// of on whichever ran at that moment. Only the setup being driven has
// clients talking to it; the others are idle.
func benchCluster() error {
	if *flagMxgate == "" {
		fmt.Println("bench: cluster scenario skipped (no -mxgate PATH)")
		return nil
	}
	clients, d, rounds := *flagClusterC, *flagClusterDuration, *flagClusterRounds
	fmt.Printf("bench: greylist scenario: %d clients, %v per setup in %d slices\n", clients, d, rounds)
	// Greylisted mail never reaches the backend; the nodes still need one.
	sk, err := startSink(0)
	if err != nil {
		return err
	}
	defer sk.close()

	type setup struct {
		name  string
		start func(sinkAddr string) (*greyTarget, error)
		skip  string // why it does not run
	}
	setups := []setup{
		{name: setupStandalone, start: startGreyStandalone},
		{name: setupCluster, start: startGreyCluster},
	}
	peer := setup{name: setupPostgrey}
	if *flagSkipPostgrey {
		peer.skip = "-skip-postgrey"
	} else if bin, err := postgreyBin(); err != nil {
		peer.skip = err.Error()
	} else {
		peer.start = func(sinkAddr string) (*greyTarget, error) { return startGreyPostgrey(sinkAddr, bin) }
	}
	setups = append(setups, peer)

	var (
		runs   []*greyRun
		failed error
	)
	// fail records a setup's failure; the other setups' numbers are still
	// worth printing.
	fail := func(r *greyRun, err error) {
		if interrupted.Load() {
			return // the connections were closed under the clients
		}
		err = fmt.Errorf("%s: %w", r.row.name, err)
		if r.t != nil {
			fmt.Fprintf(os.Stderr, "bench: %s log tail:\n%s\n", r.row.name, r.t.logTail())
		}
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		failed = errors.Join(failed, err)
		r.row.skipped = "failed (see above)"
		if r.closeClients != nil {
			r.closeClients()
		}
		if r.stop != nil {
			r.stop()
		}
	}
	for _, s := range setups {
		r := &greyRun{row: greyRow{name: s.name, skipped: s.skip}}
		runs = append(runs, r)
		if s.skip != "" {
			fmt.Printf("bench: %s skipped: %s\n", s.name, s.skip)
			continue
		}
		fmt.Printf("bench: starting %s\n", s.name)
		if r.t, err = s.start(sk.addr()); err != nil {
			r.t = nil // nothing to stop: start cleans up after itself
			fail(r, err)
			continue
		}
		r.stop = onCleanup(r.t.stop)
		defer r.stop()
		if r.cs, err = dialGreyClients(r.t.addrs, clients); err != nil {
			fail(r, err)
			continue
		}
		// Registered after the system's stop, so run before it, on an
		// interrupt too: mxgate's shutdown waits for open sessions.
		r.closeClients = onCleanup(func() { closeGreyClients(r.cs) })
		defer r.closeClients()
		if r.before, err = r.t.scrape(); err != nil {
			fail(r, err)
		}
	}

	slice := d / time.Duration(rounds)
	fmt.Printf("bench: greylisting, %d rounds of %v per setup\n", rounds, slice)
	for round := range rounds {
		for i := range runs {
			r := runs[(round+i)%len(runs)]
			if r.row.skipped != "" {
				continue
			}
			cpu0 := cpuTime(r.t.pids())
			load, err := driveGrey(r.cs, slice, r.t.want)
			r.row.cpu += cpuTime(r.t.pids()) - cpu0
			r.row.load.add(load)
			if err != nil {
				fail(r, err)
			}
		}
	}
	for _, r := range runs {
		if r.row.skipped != "" {
			continue
		}
		slices.Sort(r.row.load.rtts)
		if err := r.readNodes(); err != nil {
			fail(r, err)
		}
	}
	rows := make([]greyRow, len(runs))
	for i, r := range runs {
		rows[i] = r.row
	}
	printGreyTable(rows, clients, d, rounds)
	return failed
}

// greyRun is one setup in the scenario.
type greyRun struct {
	row          greyRow
	t            *greyTarget
	stop         func()
	cs           []*greyClient
	closeClients func()
	before       []metrics // the nodes' metrics before the first slice
}

// readNodes fills in the per-node numbers: the metrics now minus before.
func (r *greyRun) readNodes() error {
	after, err := r.t.scrape()
	if err != nil {
		return err
	}
	for i, m := range r.t.nodes {
		n := greyNode{
			name:      fmt.Sprintf("mx%d", i+1),
			decisions: after[i][metricNewDecisions] - r.before[i][metricNewDecisions],
			apply:     after[i].histogram(metricApply).combine(r.before[i].histogram(metricApply), -1),
		}
		if s, err := m.clusterStatus(); err == nil {
			n.name, n.state = s.Node, s.State
		}
		r.row.nodes = append(r.row.nodes, n)
		r.row.apply = r.row.apply.combine(n.apply, 1)
	}
	return nil
}

// The setups, in the table's order; the first is the baseline.
const (
	setupStandalone = "mxgate standalone (memory)"
	setupCluster    = "mxgate 3-node cluster"
	setupPostgrey   = "postfix + postgrey"
)

// greyRow is one row of the table.
type greyRow struct {
	name    string
	skipped string // not empty: why there are no numbers
	load    greyLoad
	cpu     time.Duration // CPU time of the system's processes during the run
	// apply is mxgate_raft_apply_duration_seconds over the run, merged
	// over the nodes; empty without Raft.
	apply histogram
	nodes []greyNode
}

// greyNode is one mxgate node's share of a run.
type greyNode struct {
	name, state string  // Raft state after the run ("" alone)
	decisions   float64 // mxgate_greylist_decisions_total{result="new"} during the run
	apply       histogram
}

const (
	metricNewDecisions = `mxgate_greylist_decisions_total{result="new"}`
	metricApply        = "mxgate_raft_apply_duration_seconds"
)

func printGreyTable(rows []greyRow, clients int, d time.Duration, rounds int) {
	rates := map[string]float64{}
	for _, r := range rows {
		if r.skipped == "" {
			rates[r.name] = r.load.rate()
		}
	}
	fmt.Println()
	fmt.Printf("greylist decisions (new triplets), %d clients, %v per setup in %d slices\n", clients, d, rounds)
	fmt.Printf("%-27s %11s %10s %10s %10s %10s %9s %7s %6s\n",
		"setup", "decisions/s", "reply p50", "reply p99", "apply p50", "apply p99", "CPU/dec", "errors", "ratio")
	for _, r := range rows {
		if r.skipped != "" {
			fmt.Printf("%-27s skipped: %s\n", r.name, r.skipped)
			continue
		}
		applyP50, applyP99 := "-", "-"
		if r.apply.count() > 0 {
			applyP50, applyP99 = fmtDur(r.apply.quantile(0.50)), fmtDur(r.apply.quantile(0.99))
		}
		cpu := "-"
		if r.load.decisions > 0 {
			cpu = fmtDur(r.cpu / time.Duration(r.load.decisions))
		}
		ratio := "-"
		if base := rates[setupStandalone]; base > 0 {
			ratio = fmt.Sprintf("%.2f", r.load.rate()/base)
		}
		fmt.Printf("%-27s %11.1f %10s %10s %10s %10s %9s %7d %6s\n", r.name, r.load.rate(),
			fmtDur(r.load.percentile(50)), fmtDur(r.load.percentile(99)), applyP50, applyP99,
			cpu, r.load.errors(), ratio)
	}
	fmt.Println("(decisions: RCPTs answered with the greylisting reply, mxgate's 451 4.7.1 or Postfix's 450 4.2.0")
	fmt.Println(" from postgrey, per second driven; reply p50/p99: MAIL+RCPT+RSET written to the RCPT reply, at the")
	fmt.Println(" client; apply: mxgate_raft_apply_duration_seconds over the run, all nodes merged, interpolated within")
	fmt.Println(" its buckets; CPU/dec: CPU time of the system's processes per decision; errors: RCPT replies other")
	fmt.Println(" than the greylisting reply; ratio: decisions/s against mxgate standalone)")
	if cl, pg := rates[setupCluster], rates[setupPostgrey]; cl > 0 && pg > 0 {
		fmt.Printf("bench: mxgate cluster/postgrey decisions ratio %.2f\n", cl/pg)
	}
	for _, r := range rows {
		if r.skipped != "" {
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(r.load.other)) {
			fmt.Printf("bench: %s: WARNING: %d RCPT replies %q\n", r.name, r.load.other[k], k)
		}
		var sum float64
		var parts []string
		for _, n := range r.nodes {
			sum += n.decisions
			if n.state != "" {
				parts = append(parts, fmt.Sprintf("%s %s: %.0f new, %.0f writes, apply p50 %s p99 %s", n.name, n.state,
					n.decisions, n.apply.count(), fmtDur(n.apply.quantile(0.50)), fmtDur(n.apply.quantile(0.99))))
			}
		}
		if len(parts) > 0 {
			fmt.Printf("bench: %s: %s\n", r.name, strings.Join(parts, "; "))
		}
		if len(r.nodes) > 0 && int(sum) != r.load.decisions {
			fmt.Printf("bench: %s: WARNING: the nodes counted %.0f new triplets, the clients %d greylisting replies\n",
				r.name, sum, r.load.decisions)
		}
	}
}
