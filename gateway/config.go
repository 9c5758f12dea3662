package gateway

import "time"

// Defaults of the node's limits and tls sections (README
// "Configuration"): the configuration file starts from them.
const (
	// DefaultMaxMessageBytes is 35 MiB, enforced while streaming.
	DefaultMaxMessageBytes = 35 << 20
	// DefaultMaxRecipients is RFC 5321 §4.5.3.1.8's minimum a server
	// must accept.
	DefaultMaxRecipients = 100
	// DefaultMaxConnections counts all listeners together.
	DefaultMaxConnections = 1000
	// DefaultPerIPConnections is below Postfix's
	// smtpd_client_connection_count_limit of 50 (README, "Per-client
	// limits").
	DefaultPerIPConnections = 20
	// DefaultCommandTimeout is RFC 5321 §4.5.3.2.7's server timeout.
	DefaultCommandTimeout = 5 * time.Minute
	// DefaultDataTimeout is RFC 5321 §4.5.3.2.6's, per read.
	DefaultDataTimeout = 10 * time.Minute
	// DefaultHardErrorLimit is Postfix's smtpd_hard_error_limit.
	DefaultHardErrorLimit = 20
	// DefaultJunkCommandLimit is Postfix's smtpd_junk_command_limit.
	DefaultJunkCommandLimit = 100
	// DefaultShutdownGrace is how long sessions in progress may finish
	// when the node stops.
	DefaultShutdownGrace = 30 * time.Second
	// DefaultHTTPConnections caps the HTTP listener's open connections
	// (DefaultHTTPOptions).
	DefaultHTTPConnections = 256
	// DefaultTLSMinVersion is the oldest TLS version STARTTLS offers
	// (TLSConfig's minVersion).
	DefaultTLSMinVersion = "1.2"
)
