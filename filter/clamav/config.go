package clamav

import "time"

// DefaultAddress is clamd's TCP socket on this machine (clamd.conf's
// TCPSocket 3310 on loopback), the node's clamav.address unless set.
const DefaultAddress = "tcp:127.0.0.1:3310"

// DefaultCacheTTL is how long a verdict is kept by the content's SHA-256.
const DefaultCacheTTL = time.Hour
