package clamav

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Label values are bounded: result is clean, infected or error; kind is one
// of the Kind constants. Ping and Version are not counted: the readiness
// check reports on them.
var (
	metricScans = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_clamav_scans_total",
		Help: "clamd scans by result: clean, infected, or error (not scanned; see mxgate_clamav_scan_errors_total).",
	}, []string{"result"})

	metricScanErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_clamav_scan_errors_total",
		Help: "clamd scans that gave no verdict, by kind: size_limit, unavailable, timeout, protocol, source.",
	}, []string{"kind"})

	metricScanDuration = promauto.NewHistogram(prometheus.HistogramOpts{
		Name: "mxgate_clamav_scan_duration_seconds",
		Help: "Time of a clamd scan, from the call to the verdict or error, including the wait for a connection slot.",
		// 1 ms (a small message on loopback) to the 30 s default timeout.
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	})
)

func init() {
	// Export every label value from the start, so that rate() and alerts
	// see a zero rather than no series.
	for _, r := range []string{"clean", "infected", "error"} {
		metricScans.WithLabelValues(r)
	}
	for _, k := range []string{KindSizeLimit, KindUnavailable, KindTimeout, KindProtocol, KindSource} {
		metricScanErrors.WithLabelValues(k)
	}
}

func observeScan(d time.Duration, res Result, err error) {
	metricScanDuration.Observe(d.Seconds())
	switch {
	case err != nil:
		metricScans.WithLabelValues("error").Inc()
		kind := KindProtocol
		if se, ok := err.(*ScanError); ok {
			kind = se.Kind
		}
		metricScanErrors.WithLabelValues(kind).Inc()
	case res.Infected:
		metricScans.WithLabelValues("infected").Inc()
	default:
		metricScans.WithLabelValues("clean").Inc()
	}
}

var metricCache = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "mxgate_clamav_cache_total",
	Help: "Lookups of the clamd verdict cache by result: hit (not scanned again), miss, error.",
}, []string{"result"})
