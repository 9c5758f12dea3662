package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/filter/auth"
	"github.com/mxgate/mxgate/filter/bayes"
	"github.com/mxgate/mxgate/filter/dnsbl"
	"github.com/mxgate/mxgate/filter/heuristics"
	"github.com/mxgate/mxgate/internal/dns"
)

// benchFilter measures the spam filters alone on the corpus: every
// message through mxgate's inbound body checks in this process (sender
// authentication, the DNS block list, heuristics and GTUBE, Bayes in
// Redis, as cmd/mxgate/pipelines.go orders them; DNS from the bench's
// server through internal/dns), and through rspamd's normal worker
// (/checkv2), -filter-c requests at once on each side. Virus scanning is
// left out of both (rspamd is asked with its CLAM_VIRUS symbol disabled;
// the full SMTP scenario has clamd on both sides). The two take turns,
// -full-rounds slices each, the same messages in the same slice.
func benchFilter(st *fullStack) error {
	msgs := st.corpus.msgs
	rounds, conc := *flagFullRounds, *flagFilterC
	fmt.Printf("bench: filter throughput: %d messages, %d at once, %d slices per filter\n", len(msgs), conc, rounds)

	mx, err := newMxgateFilter(st)
	if err != nil {
		return err
	}
	rs := newRspamdFilter(st.rspamd, conc)
	type side struct {
		name    string
		check   func(ctx context.Context, m corpusMsg) (string, error)
		cpu     func() time.Duration
		elapsed time.Duration
		cpuUsed time.Duration
		done    int
		hamOK   int // ham Bayes called ham (BAYES_HAM)
		spamOK  int // spam Bayes called spam (BAYES_SPAM)
		errs    int
		first   error
	}
	self := os.Getpid()
	sides := []*side{
		{name: "mxgate filter (in-process)", check: mx.check, cpu: func() time.Duration { return cpuTime([]int{self}) }},
		{name: "rspamd /checkv2", check: rs.check, cpu: func() time.Duration { return cpuTime(st.rspamd.pids()) }},
	}
	clamCPU0 := cpuTime([]int{st.clamd.proc.pid()})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	for r := range rounds {
		// Slice r: every rounds-th message, ham and spam mixed.
		var slice []corpusMsg
		for i := r; i < len(msgs); i += rounds {
			slice = append(slice, msgs[i])
		}
		for _, s := range rotate(sides, r) {
			fmt.Printf("bench: %s: slice %d of %d, %d messages\n", s.name, r+1, rounds, len(slice))
			var (
				next atomic.Int64
				mu   sync.Mutex
				wg   sync.WaitGroup
			)
			cpu0, t0 := s.cpu(), time.Now()
			for range conc {
				wg.Go(func() {
					for {
						i := int(next.Add(1) - 1)
						if i >= len(slice) {
							return
						}
						class, err := s.check(ctx, slice[i])
						mu.Lock()
						s.done++
						switch {
						case err != nil:
							s.errs++
							if s.first == nil {
								s.first = fmt.Errorf("%s: %w", slice[i].path, err)
							}
						case class == "spam" && slice[i].spam:
							s.spamOK++
						case class == "ham" && !slice[i].spam:
							s.hamOK++
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			s.elapsed += time.Since(t0)
			s.cpuUsed += s.cpu() - cpu0
		}
	}
	clamCPU := cpuTime([]int{st.clamd.proc.pid()}) - clamCPU0
	var nham, nspam int
	for _, m := range msgs {
		if m.spam {
			nspam++
		} else {
			nham++
		}
	}
	fmt.Println()
	fmt.Printf("filter throughput on testdata/spamassassin: %d messages (%d ham, %d spam), %d at once, %d slices per filter, interleaved\n",
		len(msgs), nham, nspam, conc, rounds)
	fmt.Printf("%-27s %9s %10s %12s %12s %7s %7s\n", "filter", "msg/s", "CPU/msg", "Bayes spam", "Bayes ham", "errors", "ratio")
	base := float64(sides[1].done) / sides[1].elapsed.Seconds()
	for _, s := range sides {
		rate := float64(s.done) / s.elapsed.Seconds()
		fmt.Printf("%-27s %9.1f %10s %12s %12s %7d %7.2f\n", s.name, rate, fmtDur(s.cpuUsed/time.Duration(max(s.done, 1))),
			fmt.Sprintf("%d/%d", s.spamOK, nspam), fmt.Sprintf("%d/%d", s.hamOK, nham), s.errs, rate/base)
	}
	fmt.Println("(msg/s: messages over the time each filter was driven; CPU/msg: CPU time of the bench process (mxgate's")
	fmt.Println(" filter, with the bench's DNS server and rspamd's client in it) or of rspamd's processes, per message;")
	fmt.Println(" Bayes spam/ham: spam with BAYES_SPAM, ham with BAYES_HAM: each Bayes scored, having learnt these very")
	fmt.Println(" messages; the scores are not compared: with every name NXDOMAIN, rspamd's hfilter scores the corpus's")
	fmt.Println(" hosts as unresolvable; ratio: against rspamd)")
	fmt.Printf("bench: mxgate/rspamd filter ratio %.2f\n", float64(sides[0].done)/sides[0].elapsed.Seconds()/base)
	fmt.Printf("bench: clamd CPU during the filter scenario: %v (none expected)\n", clamCPU)
	for _, s := range sides {
		if s.first != nil {
			fmt.Printf("bench: %s: WARNING: %d errors, the first: %v\n", s.name, s.errs, s.first)
		}
	}
	return nil
}

// mxgateFilter is the inbound pipeline's spam checks in this process.
type mxgateFilter struct {
	p    *filter.Pipeline
	conn filter.Conn
	seq  atomic.Int64
}

func newMxgateFilter(st *fullStack) (*mxgateFilter, error) {
	// The node logs its mail log as JSON; so does this pipeline, to
	// nowhere (rspamd logs every message too).
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	resolver, err := dns.New(dns.Options{Server: st.dns.Addr()})
	if err != nil {
		return nil, err
	}
	a, err := auth.New(auth.Config{Resolver: resolver, Hostname: "mx.bench.test", Logger: logger})
	if err != nil {
		return nil, err
	}
	bl, err := dnsbl.New(dnsbl.Config{Resolver: resolver, IPZones: []dnsbl.Zone{{Zone: dnsblZone, Score: 5}}, Logger: logger})
	if err != nil {
		return nil, err
	}
	store := bayes.OpenRedis(bayes.RedisOptions{Addr: st.redis.addr})
	onCleanup(func() { store.Close() })
	checks := []filter.BodyCheck{a, bl, heuristics.Check{}, heuristics.GTUBECheck{},
		&bayes.Check{Store: store, Features: bayes.DefaultFeatures, MinLearns: 200, Logger: logger}}
	return &mxgateFilter{
		p: filter.New(filter.Config{Body: checks, Thresholds: filter.Thresholds{Tag: 5, Quarantine: 8, Reject: 15},
			Spam: true, Logger: logger}),
		conn: filter.Conn{Listener: "inbound", IP: netip.MustParseAddr(corpusClientIP), Helo: "mail.example.net"},
	}, nil
}

// bayesClass is "spam" or "ham" when the symbols hold BAYES_SPAM or
// BAYES_HAM, both filters' names.
func bayesClass(has func(string) bool) string {
	switch {
	case has(bayes.SymbolSpam):
		return "spam"
	case has(bayes.SymbolHam):
		return "ham"
	}
	return ""
}

func (f *mxgateFilter) check(ctx context.Context, m corpusMsg) (string, error) {
	id := fmt.Sprintf("B%08d", f.seq.Add(1))
	msg, err := filter.OpenMessage(id, m.path)
	if err != nil {
		return "", err
	}
	conn := f.conn
	conn.ID = id
	d := f.p.Body(ctx, &filter.Body{Conn: &conn, From: m.from, Rcpts: []string{"user@bench.test"}, Msg: msg}, nil)
	if len(d.Errors) > 0 {
		return "", fmt.Errorf("check %s: %v", d.Errors[0].Check, d.Errors[0].Err)
	}
	return bayesClass(func(name string) bool {
		return slices.ContainsFunc(d.Symbols, func(s filter.Symbol) bool { return s.Name == name })
	}), nil
}

// rspamdFilter asks rspamd's normal worker, as an MTA's filter client
// does: the message, with the envelope and client in headers.
type rspamdFilter struct {
	r      *rspamd
	client *http.Client
}

func newRspamdFilter(r *rspamd, conc int) *rspamdFilter {
	return &rspamdFilter{r: r, client: &http.Client{Timeout: 60 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: conc, DisableCompression: true}}}
}

func (f *rspamdFilter) check(ctx context.Context, m corpusMsg) (string, error) {
	body, err := os.ReadFile(m.path)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+f.r.normal+"/checkv2", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("IP", corpusClientIP)
	req.Header.Set("Helo", "mail.example.net")
	req.Header.Set("From", m.from)
	req.Header.Set("Rcpt", "user@bench.test")
	req.Header.Set("Settings", `{"symbols_disabled": ["CLAM_VIRUS"]}`)
	resp, err := f.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var reply struct {
		Symbols map[string]json.RawMessage `json:"symbols"`
		Error   string                     `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&reply); err != nil {
		return "", fmt.Errorf("%s: %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || reply.Error != "" {
		return "", fmt.Errorf("%s: %s", resp.Status, reply.Error)
	}
	return bayesClass(func(name string) bool { _, ok := reply.Symbols[name]; return ok }), nil
}
