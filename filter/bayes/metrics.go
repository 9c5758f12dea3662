package bayes

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Label values are bounded: class is ham or spam; op is lookup, learn or
// parse; result is spam, ham, unsure or inactive.
var (
	metricLearned = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mxgate_bayes_learned",
		Help: "Messages learnt by the Bayes store, by class (ham, spam), as last read by the check.",
	}, []string{"class"})

	metricActive = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "mxgate_bayes_active",
		Help: "1 when the Bayes check scores (bayes.min_learns of each class learnt), 0 when it does not yet.",
	})

	metricErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_bayes_errors_total",
		Help: "Bayes operations that failed (store unreachable, unreadable message), by op: lookup, learn, parse; never a verdict.",
	}, []string{"op"})

	metricResults = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_bayes_results_total",
		Help: "Messages the Bayes check judged, by result: spam, ham, unsure, inactive (too few messages learnt).",
	}, []string{"result"})
)

func init() {
	for _, c := range []string{"ham", "spam"} {
		metricLearned.WithLabelValues(c)
	}
	for _, op := range []string{"lookup", "learn", "parse"} {
		metricErrors.WithLabelValues(op)
	}
	for _, r := range []string{"spam", "ham", "unsure", "inactive"} {
		metricResults.WithLabelValues(r)
	}
}
