package rspamd

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var metricRequests = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "mxgate_rspamd_requests_total",
	Help: "Requests to rspamd's /checkv2 by result: ok, error (an error is never a verdict).",
}, []string{"result"})
