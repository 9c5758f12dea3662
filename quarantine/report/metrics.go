package report

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var metricReports = promauto.NewCounter(prometheus.CounterOpts{
	Name: "mxgate_quarantine_reports_total",
	Help: "Quarantine reports queued for recipients.",
})

var metricRuns = promauto.NewCounter(prometheus.CounterOpts{
	Name: "mxgate_quarantine_report_runs_total",
	Help: "Report runs completed by this node (a run with nothing new mails nothing).",
})
