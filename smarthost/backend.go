package smarthost

import (
	"context"
	"sync"
	"time"
)

// backendState is the health of one backend mailbox server.
type backendState struct {
	addr      string
	up        bool
	failures  int       // consecutive failures, for the backoff
	downUntil time.Time // when the health checker probes it again
}

// backendPool chooses backends round-robin among the healthy ones. Down
// periods use the real monotonic clock, not Config.Clock: they pace network
// probes, not message lifetimes.
type backendPool struct {
	downMin, downMax time.Duration

	mu   sync.Mutex
	list []*backendState
	next int
}

func newBackendPool(addrs []string, downMin, downMax time.Duration) *backendPool {
	p := &backendPool{downMin: downMin, downMax: downMax}
	for _, a := range addrs {
		p.list = append(p.list, &backendState{addr: a, up: true})
		metricBackendUp.WithLabelValues(a).Set(1)
	}
	return p
}

// pick returns the next healthy backend not in tried, "" if none is left.
func (p *backendPool) pick(tried map[string]bool) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range p.list {
		b := p.list[p.next%len(p.list)]
		p.next++
		if b.up && !tried[b.addr] {
			return b.addr
		}
	}
	return ""
}

// markDown records a failure of addr and reports whether it just went down.
// The down period doubles with each consecutive failure.
func (p *backendPool) markDown(addr string) (wentDown bool, period time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.find(addr)
	if b == nil {
		return false, 0
	}
	period = p.downMin
	for i := 0; i < b.failures && period < p.downMax; i++ {
		period *= 2
	}
	period = min(period, p.downMax)
	b.failures++
	b.downUntil = time.Now().Add(period)
	wentDown = b.up
	b.up = false
	metricBackendUp.WithLabelValues(addr).Set(0)
	return wentDown, period
}

// markUp records a success of addr and reports whether it just came back.
func (p *backendPool) markUp(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.find(addr)
	if b == nil {
		return false
	}
	cameBack := !b.up
	b.up = true
	b.failures = 0
	metricBackendUp.WithLabelValues(addr).Set(1)
	return cameBack
}

func (p *backendPool) find(addr string) *backendState {
	for _, b := range p.list {
		if b.addr == addr {
			return b
		}
	}
	return nil
}

// dueForProbe returns the down backends whose down period is over.
func (p *backendPool) dueForProbe(now time.Time) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var due []string
	for _, b := range p.list {
		if !b.up && !now.Before(b.downUntil) {
			due = append(due, b.addr)
		}
	}
	return due
}

// healthLoop re-probes down backends (connect, EHLO, QUIT) and, when one
// comes back, retries at once the messages that waited only for a backend.
func (p *backendPool) healthLoop(ctx context.Context, q *Queue) {
	if len(p.list) == 0 {
		return
	}
	interval := min(max(p.downMin/4, 10*time.Millisecond), time.Second)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, addr := range p.dueForProbe(time.Now()) {
			err := q.probe(ctx, addr)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				_, period := p.markDown(addr)
				q.log.Debug("backend probe failed", "backend", addr, "retry_in", period, "error", err)
				continue
			}
			if p.markUp(addr) {
				q.log.Info("backend_up", "event", "backend_up", "backend", addr)
				q.retryBackendWaiters()
			}
		}
	}
}
