// Package greylist implements triplet greylisting: a first message from a
// (client network, envelope sender, recipient) triplet is told to come back
// later (451 4.7.1 at RCPT); real MTAs retry after the delay, most spam
// engines do not. A passed triplet is remembered for a lifetime that is
// refreshed on use, and a client network that passed often enough is
// auto-allowed for everything.
//
// The decision logic in Greylister reads and writes through the Store
// interface owned here; MemoryStore is the single-node implementation that
// survives restarts through an atomically written snapshot, and
// cluster.GreylistStore the Raft-backed one. When an entry is dead is
// decided here, by Triplet.Expired and Network.Expired, for the Greylister
// and for both stores' expiry. Time comes from an injected clock so the
// rules are tested without sleeping. Store errors fail open: greylisting is
// a spam-reduction measure, never a reason to refuse mail when state is
// unavailable (README, "Greylisting").
package greylist
