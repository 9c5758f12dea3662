package greylist

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metricDecisions has one label, result, bounded to the six Result values.
var metricDecisions = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "mxgate_greylist_decisions_total",
	Help: "Greylist decisions by result (new, early_retry, passed, allowed, auto_allowed, store_error).",
}, []string{"result"})

func init() {
	// Pre-create every label value so rates and alerts see 0, not absence.
	for _, r := range allResults {
		metricDecisions.WithLabelValues(string(r))
	}
}
