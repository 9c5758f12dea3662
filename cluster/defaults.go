package cluster

import "time"

// Defaults of the node's cluster section (README "The cluster"); Start
// uses DefaultRemoveDeadAfter for a zero Config.RemoveDeadAfter.
const (
	// DefaultGossipBind is memberlist's address, TCP and UDP.
	DefaultGossipBind = ":7946"
	// DefaultRaftBind is Raft's and write forwarding's address (TLS).
	DefaultRaftBind = ":7947"
	// DefaultRemoveDeadAfter is how long a voter may be dead in gossip
	// before the leader removes it.
	DefaultRemoveDeadAfter = 24 * time.Hour
)
