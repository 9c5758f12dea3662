package smarthost

// Defaults of Config's zero values, exported for the node's configuration
// file (queue and outbound sections, README "Configuration"), which starts
// from them.
const (
	// DefaultLifetime: recipients still pending after it bounce.
	DefaultLifetime = defaultLifetime
	// DefaultRetryMin is the first retry delay; it doubles per attempt.
	DefaultRetryMin = defaultRetryMin
	// DefaultRetryMax caps the retry delay.
	DefaultRetryMax = defaultRetryMax
	// DefaultWorkers is the number of concurrent deliveries.
	DefaultWorkers = defaultWorkers
	// DefaultOutboundPort is the port of remote MX hosts.
	DefaultOutboundPort = defaultOutboundPort
)
