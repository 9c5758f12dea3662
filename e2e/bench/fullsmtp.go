package main

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// postfixMilterCF makes the bench's Postfix the mailcow-like stack: its
// smtpd asks rspamd's proxy worker (milter mode) about every message
// before it answers the end of DATA; a milter failure tempfails the
// message (so that the load sees it) instead of passing it unscanned.
const postfixMilterCF = `smtpd_milters = inet:%s
non_smtpd_milters =
milter_protocol = 6
milter_default_action = tempfail
milter_mail_macros = i {mail_addr} {client_addr} {client_name} {auth_authen}
`

// fullSetup is one system of the full scenario.
type fullSetup struct {
	name    string
	addr    string
	sk      *sink
	pids    func() []int
	logTail func() string
	load    loadResult // the slices' latencies; start and end unused
	elapsed time.Duration
	rss     *rssSampler
	rssKB   int64
	clamCPU time.Duration // clamd's CPU time while this system was driven
}

func (s *fullSetup) rate() float64 { return float64(len(s.load.latencies)) / s.elapsed.Seconds() }

// benchFullSMTP sends the relay scenario's load (-n messages of -size
// bytes over -c connections) through mxgate with every check on and
// through Postfix with rspamd as its milter, both running at once and
// driven in turn, -full-rounds slices each.
func benchFullSMTP(st *fullStack) error {
	n, c, size, rounds := *flagN, *flagC, *flagSize, *flagFullRounds
	fmt.Printf("bench: full pipeline, SMTP: %d messages of %d bytes over %d connections, %d slices per system\n", n, size, c, rounds)
	var setups []*fullSetup
	for _, name := range []string{"mxgate (all checks)", "postfix + rspamd milter"} {
		sk, err := startSink(int64(n))
		if err != nil {
			return err
		}
		defer sk.close()
		setups = append(setups, &fullSetup{name: name, sk: sk})
	}
	mxs, pfs := setups[0], setups[1]

	fmt.Printf("bench: starting %s\n", mxs.name)
	mx, err := startMxgate(mxs.sk.addr(), mxgateOptions{clamavAddr: st.clamd.addr, spam: st.mxgateFullConf()})
	if err != nil {
		return fmt.Errorf("mxgate: %w", err)
	}
	defer onCleanup(func() {
		if err := mx.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: stopping mxgate: %v\n", err)
		}
	})()
	mxs.addr, mxs.pids, mxs.logTail = mx.addr(), mx.pids, mx.logTail

	fmt.Printf("bench: starting %s\n", pfs.name)
	pf, err := startPostfixWith(pfs.sk.addr(), fmt.Sprintf(postfixMilterCF, st.rspamd.proxy))
	if err != nil {
		return fmt.Errorf("postfix: %w", err)
	}
	defer onCleanup(func() {
		if err := pf.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: stopping postfix: %v\n", err)
		}
	})()
	pfs.addr = pf.addr()
	pfs.pids = func() []int { return append(pf.pids(), st.rspamd.pids()...) }
	pfs.logTail = func() string { return pf.logTail() + "\n" + st.rspamd.logTail() }

	for _, s := range setups {
		s.rss = sampleRSS(s.pids, 100*time.Millisecond)
	}
	fail := func(s *fullSetup, err error) error {
		if !interrupted.Load() {
			fmt.Fprintf(os.Stderr, "bench: %s log tail:\n%s\n", s.name, s.logTail())
		}
		return fmt.Errorf("%s: %w", s.name, err)
	}
	per := max(n/rounds, 1)
	for r := range rounds {
		count := per
		if r == rounds-1 {
			count = n - per*(rounds-1)
		}
		for _, s := range rotate(setups, r) {
			fmt.Printf("bench: %s: slice %d of %d, %d messages\n", s.name, r+1, rounds, count)
			clam0 := cpuTime([]int{st.clamd.proc.pid()})
			l, err := runLoadFrom(s.addr, int64(r*per), count, c, size)
			if err != nil {
				return fail(s, err)
			}
			s.clamCPU += cpuTime([]int{st.clamd.proc.pid()}) - clam0
			s.elapsed += l.end.Sub(l.start)
			s.load.latencies = append(s.load.latencies, l.latencies...)
		}
	}
	for _, s := range setups {
		select {
		case <-s.sk.done:
		case <-time.After(*flagDeliverWait):
			return fail(s, fmt.Errorf("sink received %d of %d messages %v after the last 250", s.sk.count.Load(), n, *flagDeliverWait))
		}
		s.rssKB = s.rss.stop()
		slices.Sort(s.load.latencies)
	}

	// What mxgate's checks did, from its metrics: proof that each ran.
	ms, err := scrape(mx.http)
	if err != nil {
		return fail(mxs, err)
	}
	fmt.Println()
	fmt.Printf("full pipeline through SMTP: %d messages of %d bytes, %d connections, %d slices per system, interleaved\n", n, size, c, rounds)
	fmt.Printf("%-26s %9s %9s %9s %10s %7s\n", "system", "msg/s", "p50", "p99", "peak RSS", "ratio")
	for _, s := range setups {
		fmt.Printf("%-26s %9.1f %9s %9s %10s %7.2f\n", s.name, s.rate(), fmtDur(s.load.percentile(50)),
			fmtDur(s.load.percentile(99)), fmt.Sprintf("%.1f MiB", float64(s.rssKB)/1024), s.rate()/pfs.rate())
	}
	fmt.Println("(msg/s: messages over the time the system was driven, first MAIL to last 250 of each slice; p50/p99:")
	fmt.Println(" end of DATA to 250; peak RSS: mxgate's process, or Postfix's and rspamd's processes (shared pages")
	fmt.Println(" counted per process); clamd, Redis and the DNS server, shared, are in neither; ratio: against postfix + rspamd)")
	fmt.Printf("bench: mxgate/(postfix+rspamd) ratio %.2f\n", mxs.rate()/pfs.rate())
	fmt.Printf("bench: mxgate checks: clamd scans %s, DNSBL lookups %s, Bayes results %s, spam verdicts %s\n",
		sumMetric(ms, "mxgate_clamav_scans_total"), sumMetric(ms, "mxgate_dnsbl_lookups_total"),
		sumMetric(ms, "mxgate_bayes_results_total"), sumMetric(ms, "mxgate_spam_verdicts_total"))
	tasks, withBayes := st.rspamd.proxyTasks()
	fmt.Printf("bench: rspamd proxy: %d messages logged, %d with a BAYES_ symbol\n", tasks, withBayes)
	fmt.Printf("bench: clamd CPU while driven: mxgate %v, postfix + rspamd %v\n",
		mxs.clamCPU.Round(10*time.Millisecond), pfs.clamCPU.Round(10*time.Millisecond))
	return nil
}

// sumMetric sums every series of a metric, with its labels' values
// listed: `5000 (clean 5000)`.
func sumMetric(ms metrics, name string) string {
	var sum float64
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(ms)) {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		sum += ms[k]
		if ms[k] > 0 && k != name {
			parts = append(parts, fmt.Sprintf("%s %.0f", strings.TrimSuffix(strings.TrimPrefix(k, name+"{"), "}"), ms[k]))
		}
	}
	if len(parts) == 0 {
		return fmt.Sprintf("%.0f", sum)
	}
	return fmt.Sprintf("%.0f (%s)", sum, strings.Join(parts, ", "))
}
