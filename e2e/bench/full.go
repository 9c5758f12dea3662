package main

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/dnstest"
)

// The full-pipeline scenarios (issue 12) share one set of services, started
// once: the corpus (testdata/spamassassin) extracted to files, a Redis
// holding both Bayes stores, both trained on the corpus (mxgate with
// `mxgate bayes train`, rspamd through its controller), a DNS server in
// the bench process (internal/dnstest: the load's sender domain's SPF and
// DMARC, NXDOMAIN for every other name, the DNS block list's zone
// included), clamd with the test signatures, and a private rspamd.
//
//   - full: the SMTP load through mxgate with every check on against a
//     private Postfix whose smtpd asks rspamd's proxy worker as a milter
//     (the mailcow-like stack), interleaved (fullsmtp.go).
//   - filter: the corpus through mxgate's filter pipeline in this process
//     against rspamd's /checkv2 (filterbench.go).
type fullStack struct {
	corpus *corpus
	redis  *redisServer
	dns    *dnstest.Server
	clamd  *clamd
	rspamd *rspamd
	stops  []func() // in the order started
}

// stop stops the services, the last started first.
func (st *fullStack) stop() {
	for i := len(st.stops) - 1; i >= 0; i-- {
		st.stops[i]()
	}
}

// onStop registers f as a cleanup and with the stack's stop.
func (st *fullStack) onStop(f func()) { st.stops = append(st.stops, onCleanup(f)) }

// startFullStack starts the shared services; each one's stop is a cleanup
// too (on failure, the started ones stop with the bench).
func startFullStack() (*fullStack, error) {
	st := &fullStack{}
	var err error
	fmt.Println("bench: full pipeline: extracting the corpus")
	if st.corpus, err = loadCorpus(); err != nil {
		return nil, err
	}
	st.onStop(st.corpus.remove)
	if st.redis, err = startRedis(); err != nil {
		return nil, err
	}
	st.onStop(st.redis.stop)
	if st.dns, err = dnstest.New(benchZone); err != nil {
		return nil, fmt.Errorf("dns server: %w", err)
	}
	st.onStop(func() { st.dns.Close() })
	if st.clamd, err = startClamd(); err != nil {
		return nil, fmt.Errorf("clamd: %w", err)
	}
	st.onStop(st.clamd.stop)
	fmt.Printf("bench: full pipeline: redis %s, dns %s, clamd %s\n", st.redis.addr, st.dns.Addr(), st.clamd.addr)

	// mxgate's Bayes: database 0 of the bench's Redis.
	t0 := time.Now()
	out, err := exec.Command(*flagMxgate, "bayes", "train", "-redis", st.redis.addr,
		"--ham", st.corpus.classDir(false), "--spam", st.corpus.classDir(true)).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("mxgate bayes train: %v\n%s", err, tail2(string(out), 10))
	}
	fmt.Printf("bench: mxgate bayes train: %v: %s\n", time.Since(t0).Round(time.Millisecond), lastLine(string(out)))

	fmt.Println("bench: starting rspamd")
	if st.rspamd, err = startRspamd(st.redis.addr, strings.TrimPrefix(st.clamd.addr, "tcp:"), st.dns.Addr()); err != nil {
		return nil, err
	}
	st.onStop(st.rspamd.stop)
	t0 = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n, err := st.rspamd.learn(ctx, st.corpus)
	if err != nil {
		return nil, err
	}
	fmt.Printf("bench: rspamd learnt %d of %d messages in %v\n", n, len(st.corpus.msgs), time.Since(t0).Round(time.Millisecond))
	fmt.Printf("bench: rspamd: %s\n", st.rspamd.waitHyperscan(3*time.Minute))
	return st, nil
}

// mxgateFullConf is the full scenario node's spam sections: spam scoring
// with its defaults (sender authentication, heuristics), one DNS block
// list asked about loopback clients too, Bayes in the bench's Redis, and
// the bench's DNS server as the resolver.
func (st *fullStack) mxgateFullConf() string {
	return fmt.Sprintf(`spam: {enabled: true, sender_auth: true, heuristics: true}
dns: {resolver: %q}
dnsbl: {ip_zones: [{zone: %s, score: 5}], skip_private: false}
redis: {address: %q}
bayes: {enabled: true}`, st.dns.Addr(), dnsblZone, st.redis.addr)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func tail2(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// rotate returns the order of setups in round r: the first rotates, so
// that neither always runs first.
func rotate[T any](xs []T, r int) []T {
	out := slices.Clone(xs)
	for i := range out {
		out[i] = xs[(r+i)%len(xs)]
	}
	return out
}
