package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Label values are bounded: listener is one of inbound/relay/submission,
// outcome one of accepted/rejected/tempfailed, reason one of the reason
// constants in replies.go ("none" for accepted messages).
var (
	metricConnections = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_smtp_connections_total",
		Help: "SMTP connections by listener and result (accepted, or the refusal reason).",
	}, []string{"listener", "result"})

	metricSessions = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mxgate_smtp_sessions_active",
		Help: "SMTP sessions open now, by listener.",
	}, []string{"listener"})

	metricConnectionsOpen = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mxgate_smtp_connections_open",
		Help: "SMTP connections open now, by listener, from accept to close (sessions_active counts those past EHLO).",
	}, []string{"listener"})

	metricTLSHandshakes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_smtp_tls_handshakes_total",
		Help: "STARTTLS handshakes by listener and result (ok, failed).",
	}, []string{"listener", "result"})

	metricMessages = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_messages_total",
		Help: "Messages by listener, outcome and reason. Recipient refusals at RCPT count once per refused recipient.",
	}, []string{"listener", "outcome", "reason"})

	metricMessageBytes = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mxgate_message_size_bytes",
		Help:    "Size of accepted messages as received.",
		Buckets: prometheus.ExponentialBuckets(1024, 4, 10),
	}, []string{"listener"})

	metricAcceptDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mxgate_accept_duration_seconds",
		Help:    "Time from the end of DATA to the reply (spooling, fsync, filters).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"listener"})

	metricPanics = promauto.NewCounter(prometheus.CounterOpts{
		Name: "mxgate_gateway_panics_total",
		Help: "Panics recovered in SMTP sessions and HTTP handlers; any value above zero is a bug.",
	})
)
