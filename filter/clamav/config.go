package clamav

// DefaultAddress is clamd's TCP socket on this machine (clamd.conf's
// TCPSocket 3310 on loopback), the node's clamav.address unless set.
const DefaultAddress = "tcp:127.0.0.1:3310"
