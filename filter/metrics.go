package filter

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Label values are bounded: stage is conn, sender, rcpt or body; check is
// the name of a configured check; result is ok, error, timeout or panic.
var (
	metricResults = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_filter_checks_total",
		Help: "Check runs by stage, check and result (ok, error, timeout, panic); an error is never a verdict.",
	}, []string{"stage", "check", "result"})

	metricDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mxgate_filter_check_duration_seconds",
		Help:    "Time a check took, by stage and check (checks cut off by the stage deadline are not observed).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	}, []string{"stage", "check"})

	metricPanics = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_filter_check_panics_total",
		Help: "Panics contained in checks; any value above zero is a bug.",
	}, []string{"check"})
)

// The verdict of spam scoring; symbol names come from the checks' code and
// the configured zones, so they are bounded.
var (
	metricScore = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "mxgate_spam_score",
		Help:    "Spam score of each message scored at the end of DATA.",
		Buckets: []float64{-10, -5, -2, 0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 50, 100},
	})

	metricVerdicts = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_spam_verdicts_total",
		Help: "Verdicts at the end of DATA by action: accept, tag, quarantine, tempfail, reject.",
	}, []string{"action"})

	metricSymbolHits = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_spam_symbol_hits_total",
		Help: "Symbols emitted by the checks, by symbol.",
	}, []string{"symbol"})
)
