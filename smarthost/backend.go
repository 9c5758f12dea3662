package smarthost

import (
	"context"
	"sync"
	"time"
)

// backendState is the health of one backend mailbox server.
type backendState struct {
	addr string
	up   bool
	// gen changes on every transition between up and down. A delivery
	// or a probe carries the gen it started at, and its outcome counts
	// only if the backend has not changed state since: when a backend
	// fails, every delivery then in flight to it fails too, and those
	// failures are the same outage, not as many consecutive ones.
	gen uint64
	// level is the number of consecutive failures counted: the down
	// period is downMin doubled level-1 times, at most downMax. A
	// delivered message resets it.
	level     int
	downUntil time.Time // when the health checker probes it again
}

// backendPool chooses backends round-robin among the healthy ones and keeps
// their health. Down periods use the real clock, not Config.Clock: they pace
// network probes, not message lifetimes; tests replace now.
type backendPool struct {
	downMin, downMax time.Duration
	now              func() time.Time

	mu   sync.Mutex
	list []*backendState
	next int
}

func newBackendPool(addrs []string, downMin, downMax time.Duration) *backendPool {
	p := &backendPool{downMin: downMin, downMax: downMax, now: time.Now}
	for _, a := range addrs {
		p.list = append(p.list, &backendState{addr: a, up: true})
		metricBackendUp.WithLabelValues(a).Set(1)
	}
	return p
}

// pick returns the next healthy backend not in tried and its generation, to
// be passed to markDown or markUp with the outcome; addr is "" if none is
// left.
func (p *backendPool) pick(tried map[string]bool) (addr string, gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range p.list {
		b := p.list[p.next%len(p.list)]
		p.next++
		if b.up && !tried[b.addr] {
			return b.addr, b.gen
		}
	}
	return "", 0
}

// anyUp reports whether some backend is healthy.
func (p *backendPool) anyUp() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.list {
		if b.up {
			return true
		}
	}
	return false
}

// downPeriod is the down period after level consecutive failures.
func (p *backendPool) downPeriod(level int) time.Duration {
	d := p.downMin
	for i := 1; i < level && d < p.downMax; i++ {
		d *= 2
	}
	return min(d, p.downMax)
}

// markDown records a failure of addr seen by a delivery or probe that
// started at generation gen. It counts only if the backend is still in that
// generation: either it was up (the first failure of an outage: it goes
// down, wentDown is true) or it is down and its down period is over (a
// probe failed again: the period doubles). Any other failure belongs to an
// outage already counted and changes nothing; period is then 0.
func (p *backendPool) markDown(addr string, gen uint64) (wentDown bool, period time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.find(addr)
	if b == nil || b.gen != gen {
		return false, 0
	}
	now := p.now()
	if b.up {
		b.up = false
		b.gen++
		wentDown = true
		metricBackendUp.WithLabelValues(addr).Set(0)
	} else if now.Before(b.downUntil) {
		return false, 0
	}
	b.level++
	period = p.downPeriod(b.level)
	b.downUntil = now.Add(period)
	return wentDown, period
}

// markUp records a success of addr seen by a delivery or probe that started
// at generation gen, and reports whether the backend just came back. A
// probe of a down backend brings it back, keeping its failure count so that
// one that answers probes but fails deliveries still backs off; a delivery
// resets the count. Outcomes from an older generation change nothing: once
// down, only a probe brings a backend back.
func (p *backendPool) markUp(addr string, gen uint64) (cameBack bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.find(addr)
	if b == nil || b.gen != gen {
		return false
	}
	if b.up {
		b.level = 0
		return false
	}
	b.up = true
	b.gen++
	metricBackendUp.WithLabelValues(addr).Set(1)
	return true
}

func (p *backendPool) find(addr string) *backendState {
	for _, b := range p.list {
		if b.addr == addr {
			return b
		}
	}
	return nil
}

// probeTarget is a down backend due for a health check.
type probeTarget struct {
	addr string
	gen  uint64
}

// dueForProbe returns the down backends whose down period is over.
func (p *backendPool) dueForProbe() []probeTarget {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	var due []probeTarget
	for _, b := range p.list {
		if !b.up && !now.Before(b.downUntil) {
			due = append(due, probeTarget{addr: b.addr, gen: b.gen})
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
		for _, b := range p.dueForProbe() {
			err := q.probe(ctx, b.addr)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				_, period := p.markDown(b.addr, b.gen)
				q.log.Debug("backend probe failed", "backend", b.addr, "retry_in", period.String(), "error", err)
				continue
			}
			if p.markUp(b.addr, b.gen) {
				q.log.Info("backend_up", "event", "backend_up", "backend", b.addr)
				q.retryBackendWaiters()
			}
		}
	}
}
