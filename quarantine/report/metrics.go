package report

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var metricReports = promauto.NewCounter(prometheus.CounterOpts{
	Name: "mxgate_quarantine_reports_total",
	Help: "Quarantine reports queued for recipients.",
})
