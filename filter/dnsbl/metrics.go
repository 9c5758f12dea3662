package dnsbl

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Label values are bounded: zone is a configured zone, result hit, miss or
// error.
var metricLookups = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "mxgate_dnsbl_lookups_total",
	Help: "DNS block list lookups by configured zone and result (hit, miss, error: an error code, SERVFAIL or timeout, never a hit).",
}, []string{"zone", "result"})

const (
	resultHit   = "hit"
	resultMiss  = "miss"
	resultError = "error"
)
