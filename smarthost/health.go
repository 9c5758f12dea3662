package smarthost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	metricSpoolFreeBytes = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "mxgate_spool_free_bytes",
		Help: "Free space in the spool's file system, for this process, at the last spool check.",
	})
	metricSpoolWritable = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "mxgate_spool_writable",
		Help: "1 when the last spool check could write and fsync a file in the spool, 0 when not (full, read-only, an fsync failed).",
	})
)

// probeSize is what the write probe writes: one page, the least a full
// file system has to refuse.
const probeSize = 4096

// SpoolMonitor checks that the spool can take mail: its file system has
// room for a message, is writable, and no fsync has failed. The queue
// works without it; the node's readiness uses it.
type SpoolMonitor struct {
	q       *Queue
	minFree uint64
	// hungAfter: a check still running after this long (a hung disk) is
	// itself not ready.
	hungAfter time.Duration

	mu      sync.Mutex // one check at a time
	last    atomic.Pointer[error]
	started atomic.Int64 // unix nanoseconds of the check running, 0 when none
}

// NewSpoolMonitor watches q's spool; minFree is the free space, in bytes,
// below which the spool is not ready to receive.
func NewSpoolMonitor(q *Queue, minFree uint64) *SpoolMonitor {
	m := &SpoolMonitor{q: q, minFree: minFree, hungAfter: 30 * time.Second}
	notYet := errors.New("not checked yet")
	m.last.Store(&notYet)
	return m
}

// Run checks every interval until ctx is done, the first time at once.
func (m *SpoolMonitor) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var was error
	for first := true; ; first = false {
		err := m.Check()
		switch {
		case err != nil && (first || was == nil || err.Error() != was.Error()):
			m.q.log.Warn("spool cannot take mail", "event", "spool_not_ready", "error", err.Error())
		case err == nil && was != nil && !first:
			m.q.log.Info("spool can take mail again", "event", "spool_ready")
		}
		was = err
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Ready returns the result of the last check: nil when the spool can take
// mail, else why not.
func (m *SpoolMonitor) Ready() error {
	if s := m.started.Load(); s != 0 {
		if d := time.Since(time.Unix(0, s)); d > m.hungAfter {
			return fmt.Errorf("spool check running for %v: the disk does not answer", d.Round(time.Second))
		}
	}
	return *m.last.Load()
}

// Check runs one check now, records its result for Ready and the metrics,
// and returns it.
func (m *SpoolMonitor) Check() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.started.Store(time.Now().UnixNano())
	writable, err := m.check()
	m.started.Store(0)
	m.last.Store(&err)
	if writable {
		metricSpoolWritable.Set(1)
	} else {
		metricSpoolWritable.Set(0)
	}
	return err
}

// check returns whether a file could be written and fsynced, and whether
// the spool can take mail.
func (m *SpoolMonitor) check() (writable bool, err error) {
	if m.q.closed.Load() {
		return false, errSpoolClosed
	}
	for _, s := range []*dirSyncer{m.q.msgSync, m.q.envSync} {
		if err := s.stickyErr(); err != nil && !errors.Is(err, errSpoolClosed) {
			return false, fmt.Errorf("%w; the spool takes no mail until mxgate is restarted", err)
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.q.cfg.Dir, &st); err != nil {
		metricSpoolFreeBytes.Set(0)
		return false, fmt.Errorf("statfs %s: %w", m.q.cfg.Dir, err)
	}
	free := st.Bavail * uint64(st.Bsize)
	metricSpoolFreeBytes.Set(float64(free))
	const stRDONLY = 1 // ST_RDONLY in statfs(2) f_flags
	if st.Flags&stRDONLY != 0 {
		return false, fmt.Errorf("%s is on a read-only file system", m.q.cfg.Dir)
	}
	if err := m.probe(); err != nil {
		return false, err
	}
	if free < m.minFree {
		return true, fmt.Errorf("%d bytes free in %s, less than the %d needed to take a message of the largest size", free, m.q.cfg.Dir, m.minFree)
	}
	if st.Files > 0 && st.Ffree == 0 {
		return true, fmt.Errorf("no inodes free in %s", m.q.cfg.Dir)
	}
	return true, nil
}

// probe writes, fsyncs and removes a file where drafts are written. Any
// leftover is removed with the other drafts at the next start.
func (m *SpoolMonitor) probe() error {
	f, err := os.CreateTemp(m.q.tmpDir, "health-probe-")
	if err != nil {
		return fmt.Errorf("write probe: %w", err)
	}
	name := f.Name()
	defer os.Remove(name)
	if _, err := f.Write(make([]byte, probeSize)); err != nil {
		_ = f.Close()
		return fmt.Errorf("write probe: %w", err)
	}
	if err := fdatasync(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("write probe: fsync %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write probe: %w", err)
	}
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("write probe: %w", err)
	}
	return nil
}

// stickyErr is the error that stopped this directory's fsyncs, if any.
func (s *dirSyncer) stickyErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
