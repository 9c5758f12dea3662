package smarthost

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/internal/dns"
)

// Queue is the spool and its delivery runner.
type Queue struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	tmpDir string
	msgDir string
	envDir string

	msgSync *dirSyncer
	envSync *dirSyncer

	router   *router
	backends *backendPool
	conns    *connPool

	mu      sync.Mutex
	msgs    map[string]*message
	sched   schedHeap // messages waiting for their next attempt
	wake    chan struct{}
	running atomic.Bool
	closed  atomic.Bool
	runMu   sync.Mutex // held while Run runs
}

// message is the in-memory state of a queued message. Its fields are
// guarded by Queue.mu; env is modified only by the worker that owns the
// message (inFlight), under Queue.mu, so List can read it at any time.
type message struct {
	id   string
	env  Envelope
	size int64

	inFlight bool
	index    int // position in Queue.sched, -1 if not in it
}

// MessageInfo describes a queued message for admin commands.
type MessageInfo struct {
	ID          string
	From        string
	Recipients  []Recipient
	Size        int64
	ReceivedAt  time.Time
	Attempts    int
	NextAttempt time.Time
	InFlight    bool
}

// Open opens or creates the spool in cfg.Dir and recovers it: drafts that
// were not committed are removed and every committed message is loaded for
// delivery.
func Open(cfg Config) (*Queue, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	q := &Queue{
		cfg:    cfg,
		log:    cfg.Logger,
		now:    cfg.Clock,
		tmpDir: filepath.Join(cfg.Dir, tmpDirName),
		msgDir: filepath.Join(cfg.Dir, msgDirName),
		envDir: filepath.Join(cfg.Dir, envDirName),
		msgs:   make(map[string]*message),
		wake:   make(chan struct{}, 1),
	}
	for _, d := range []string{q.tmpDir, q.msgDir, q.envDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create spool directory: %w", err)
		}
	}
	if q.msgSync, err = openDirSyncer(q.msgDir); err != nil {
		return nil, err
	}
	if q.envSync, err = openDirSyncer(q.envDir); err != nil {
		_ = q.msgSync.close()
		return nil, err
	}
	msgs, err := q.recover()
	if err == nil {
		// Removals done by recovery must not come back after a crash.
		err = errors.Join(q.msgSync.Sync(), q.envSync.Sync())
	}
	if err != nil {
		_ = q.Close()
		return nil, fmt.Errorf("recover spool %s: %w", cfg.Dir, err)
	}
	resolver := cfg.Resolver
	if resolver == nil {
		if resolver, err = dns.New(dns.Options{}); err != nil {
			_ = q.Close()
			return nil, fmt.Errorf("smarthost: %w", err)
		}
	}
	q.router = newRouter(cfg, resolver)
	q.backends = newBackendPool(cfg.Backends, cfg.BackendDownMin, cfg.BackendDownMax)
	q.conns = newConnPool(cfg.Workers, cfg.IdleTimeout)
	now := q.now()
	for _, m := range msgs {
		if m.env.WaitingBackend {
			// It was waiting for a backend to come back; the pool
			// starts out knowing nothing, so find out now rather
			// than at a retry time computed from queue.retry_min.
			m.env.NextAttempt = now
		}
		q.add(m)
	}
	q.log.Info("requeue", "event", "requeue", "count", len(msgs), "dir", cfg.Dir)
	return q, nil
}

// Close releases the spool's directory handles. Call it after Run returned;
// Commit fails afterwards.
func (q *Queue) Close() error {
	if q.closed.Swap(true) {
		return nil
	}
	var errs []error
	if q.msgSync != nil {
		errs = append(errs, q.msgSync.close())
	}
	if q.envSync != nil {
		errs = append(errs, q.envSync.close())
	}
	return errors.Join(errs...)
}

// add puts a message in the queue, due at env.NextAttempt.
func (q *Queue) add(m *message) {
	q.mu.Lock()
	m.index = -1
	q.msgs[m.id] = m
	heap.Push(&q.sched, m)
	n := len(q.msgs)
	q.mu.Unlock()
	metricQueueMessages.Set(float64(n))
	q.poke()
}

// poke wakes the scheduler.
func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Len returns the number of messages in the queue.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs)
}

// Oldest returns the arrival time of the oldest queued message, zero if the
// queue is empty.
func (q *Queue) Oldest() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	var oldest time.Time
	for _, m := range q.msgs {
		if oldest.IsZero() || m.env.ReceivedAt.Before(oldest) {
			oldest = m.env.ReceivedAt
		}
	}
	return oldest
}

// Ready reports whether the spool is open and the runner started.
func (q *Queue) Ready() bool { return q.running.Load() && !q.closed.Load() }

// List returns the queued messages, oldest first.
func (q *Queue) List() []MessageInfo {
	q.mu.Lock()
	out := make([]MessageInfo, 0, len(q.msgs))
	for _, m := range q.msgs {
		out = append(out, MessageInfo{
			ID:          m.id,
			From:        m.env.From,
			Recipients:  append([]Recipient(nil), m.env.Recipients...),
			Size:        m.size,
			ReceivedAt:  m.env.ReceivedAt,
			Attempts:    m.env.Attempts,
			NextAttempt: m.env.NextAttempt,
			InFlight:    m.inFlight,
		})
	}
	q.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Flush makes every waiting message due now.
func (q *Queue) Flush() {
	q.mu.Lock()
	now := q.now()
	for _, m := range q.sched {
		m.env.NextAttempt = now
	}
	heap.Init(&q.sched)
	q.mu.Unlock()
	q.poke()
}

// retryBackendWaiters makes the messages that wait only for a backend due
// now: a backend came back, RetryMin would be a needless delay.
func (q *Queue) retryBackendWaiters() {
	q.mu.Lock()
	now := q.now()
	n := 0
	for _, m := range q.sched {
		if m.env.WaitingBackend {
			m.env.NextAttempt = now
			n++
		}
	}
	if n > 0 {
		heap.Init(&q.sched)
	}
	q.mu.Unlock()
	if n > 0 {
		q.poke()
	}
}

// Run runs the queue runner until ctx is done. It returns after the
// workers stopped and the pooled connections were closed. Deliveries in
// progress are interrupted; their messages stay in the spool.
func (q *Queue) Run(ctx context.Context) error {
	if !q.runMu.TryLock() {
		return errors.New("smarthost: Run called twice")
	}
	defer q.runMu.Unlock()
	if q.closed.Load() {
		return errSpoolClosed
	}

	work := make(chan *message)
	var wg sync.WaitGroup
	for range q.cfg.Workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-work:
					q.process(ctx, m)
				}
			}
		})
	}
	wg.Go(func() { q.backends.healthLoop(ctx, q) })
	wg.Go(func() { q.conns.reapLoop(ctx) })
	wg.Go(func() { q.gaugeLoop(ctx) })

	q.running.Store(true)
	q.schedule(ctx, work)
	q.running.Store(false)

	wg.Wait()
	q.conns.closeAll()
	return nil
}

// schedule hands due messages to the workers until ctx is done.
func (q *Queue) schedule(ctx context.Context, work chan<- *message) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		q.mu.Lock()
		var due *message
		// Re-check at least every minute: the injected or system clock
		// may jump.
		wait := time.Minute
		if len(q.sched) > 0 {
			top := q.sched[0]
			if d := top.env.NextAttempt.Sub(q.now()); d <= 0 {
				due = heap.Pop(&q.sched).(*message)
				due.inFlight = true
			} else if d < wait {
				wait = d
			}
		}
		q.mu.Unlock()

		if due != nil {
			select {
			case work <- due:
				continue
			case <-ctx.Done():
				q.requeue(due)
				return
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		case <-timer.C:
		}
	}
}

// requeue puts a message taken by the scheduler back in the waiting set.
func (q *Queue) requeue(m *message) {
	q.mu.Lock()
	m.inFlight = false
	heap.Push(&q.sched, m)
	q.mu.Unlock()
}

// finish ends a delivery run of m: it is removed when done, else waits for
// its next attempt.
func (q *Queue) finish(m *message, done bool) {
	q.mu.Lock()
	m.inFlight = false
	if done {
		delete(q.msgs, m.id)
	} else {
		if m.env.WaitingBackend && q.backends.anyUp() {
			// A backend came back while this attempt ran (its
			// retryBackendWaiters did not see m, which was in
			// flight), or the failure that deferred m belonged to
			// an outage that was already over.
			m.env.NextAttempt = q.now()
		}
		heap.Push(&q.sched, m)
	}
	n := len(q.msgs)
	q.mu.Unlock()
	metricQueueMessages.Set(float64(n))
	q.poke()
}

// gaugeLoop keeps the queue gauges current.
func (q *Queue) gaugeLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		metricQueueMessages.Set(float64(q.Len()))
		age := 0.0
		if oldest := q.Oldest(); !oldest.IsZero() {
			age = max(q.now().Sub(oldest).Seconds(), 0)
		}
		metricQueueOldestAge.Set(age)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// schedHeap orders messages by next attempt.
type schedHeap []*message

func (h schedHeap) Len() int { return len(h) }
func (h schedHeap) Less(i, j int) bool {
	return h[i].env.NextAttempt.Before(h[j].env.NextAttempt)
}
func (h schedHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *schedHeap) Push(x any) {
	m := x.(*message)
	m.index = len(*h)
	*h = append(*h, m)
}
func (h *schedHeap) Pop() any {
	old := *h
	n := len(old)
	m := old[n-1]
	old[n-1] = nil
	m.index = -1
	*h = old[:n-1]
	return m
}
