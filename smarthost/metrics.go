package smarthost

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Destination classes and results used as label values; keep them bounded.
const (
	destBackend   = "backend"
	destTransport = "transport"
	destMX        = "mx"

	resultDelivered = "delivered"
	resultDeferred  = "deferred"
	resultFailed    = "failed"
)

var (
	metricQueueMessages = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "mxgate_queue_messages",
		Help: "Messages in the delivery queue.",
	})
	metricQueueOldestAge = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "mxgate_queue_oldest_age_seconds",
		Help: "Age of the oldest message in the delivery queue (0 when empty).",
	})
	metricSpoolFsync = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "mxgate_spool_fsync_duration_seconds",
		Help:    "Time Commit spends making a message durable (flush, fsyncs, renames).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	metricDeliveryAttempts = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_delivery_attempts_total",
		Help: "Delivery attempts, one per recipient per attempt, by destination class and result.",
	}, []string{"destination", "result"})
	metricBackendUp = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mxgate_backend_up",
		Help: "Whether a backend mailbox server is considered healthy (1) or down (0).",
	}, []string{"backend"})
	metricDSNSent = promauto.NewCounter(prometheus.CounterOpts{
		Name: "mxgate_dsn_sent_total",
		Help: "Delivery status notifications (bounces) enqueued.",
	})
	metricQueueExpired = promauto.NewCounter(prometheus.CounterOpts{
		Name: "mxgate_queue_expired_total",
		Help: "Recipients bounced because they were still pending after the queue lifetime.",
	})
)
