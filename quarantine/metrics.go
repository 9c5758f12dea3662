package quarantine

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Label values are bounded: the write results, reasons and actions below.
var (
	metricWrites = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_quarantine_writes_total",
		Help: "Messages written to the quarantine: ok, full (over quarantine.max_bytes), error (the store failed: no quorum, disk).",
	}, []string{"result"})
	metricKept = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_quarantine_kept_total",
		Help: "Messages kept in the quarantine by reason: spam, virus, rejected.",
	}, []string{"reason"})
	metricActions = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_quarantine_actions_total",
		Help: "Quarantine entries released or deleted from this node.",
	}, []string{"action"})

	statsStore atomic.Pointer[Store]
	_          = promauto.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mxgate_quarantine_entries",
		Help: "Entries in the quarantine (every state; released and deleted ones until they expire).",
	}, func() float64 { return float64(currentStats().Entries) })
	_ = promauto.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mxgate_quarantine_held",
		Help: "Entries held in the quarantine, waiting for a decision.",
	}, func() float64 { return float64(currentStats().Held) })
	_ = promauto.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mxgate_quarantine_bytes",
		Help: "Compressed size of the messages held in the quarantine, the size quarantine.max_bytes caps.",
	}, func() float64 { return float64(currentStats().Bytes) })
	_ = promauto.NewCounterFunc(prometheus.CounterOpts{
		Name: "mxgate_quarantine_expired_total",
		Help: "Quarantine entries removed at the end of their lifetime (kept in the replicated state: every node reports the same).",
	}, func() float64 { return float64(currentStats().Expired) })
	metricMaxBytes = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "mxgate_quarantine_max_bytes",
		Help: "quarantine.max_bytes (0: no cap), for alerting on mxgate_quarantine_bytes.",
	})
)

func init() {
	for _, r := range []string{"ok", "full", "error"} {
		metricWrites.WithLabelValues(r)
	}
	for _, r := range []Reason{ReasonSpam, ReasonVirus, ReasonRejected} {
		metricKept.WithLabelValues(string(r))
	}
	for _, a := range []string{"released", "deleted"} {
		metricActions.WithLabelValues(a)
	}
}

// ExportMetrics makes the size gauges read s, and publishes the cap.
func ExportMetrics(s Store, maxBytes int64) {
	statsStore.Store(&s)
	metricMaxBytes.Set(float64(maxBytes))
}

func currentStats() Stats {
	p := statsStore.Load()
	if p == nil {
		return Stats{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, _ := (*p).Stats(ctx)
	return st
}

// ObserveWrite counts the outcome of a Put of a message kept for reason.
func ObserveWrite(reason Reason, err error) {
	switch {
	case err == nil:
		metricWrites.WithLabelValues("ok").Inc()
		metricKept.WithLabelValues(string(reason)).Inc()
	case Code(err) == ErrFull.code:
		metricWrites.WithLabelValues("full").Inc()
	default:
		metricWrites.WithLabelValues("error").Inc()
	}
}

// ObserveDelete counts a deletion by an operator.
func ObserveDelete() { metricActions.WithLabelValues("deleted").Inc() }
