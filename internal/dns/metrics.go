package dns

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Label values are bounded: type is one of MX, A, AAAA, TXT, PTR, TLSA (the
// only types this package asks for); result one of the result constants
// below.
var (
	metricQueries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_dns_queries_total",
		Help: "DNS queries sent to the resolver, by record type and result (ok, nxdomain, nodata, servfail, timeout, error).",
	}, []string{"type", "result"})

	metricCacheHits = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_dns_cache_hits_total",
		Help: "DNS lookups answered from the cache (positive or negative), by record type.",
	}, []string{"type"})

	metricQueryDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mxgate_dns_query_duration_seconds",
		Help:    "Time for one DNS query to the resolver, UDP and any TCP retry together, by record type.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15),
	}, []string{"type"})
)

const (
	resultOK       = "ok"
	resultNXDomain = "nxdomain"
	resultNoData   = "nodata"
	resultServFail = "servfail"
	resultTimeout  = "timeout"
	resultError    = "error"
)

func resultLabel(k Kind) string {
	switch k {
	case 0:
		return resultOK
	case NXDomain:
		return resultNXDomain
	case NoData:
		return resultNoData
	case ServFail:
		return resultServFail
	case Timeout:
		return resultTimeout
	}
	return resultError
}
