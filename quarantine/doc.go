// Package quarantine keeps the mail mxgate holds back instead of delivering
// it: spam scored between spam.quarantine and spam.reject, viruses where
// quarantine.viruses is set, and a copy of mail refused as spam (kept for
// quarantine.rejected_lifetime so that an operator can release a false
// positive; the sender got its 550).
//
// A quarantined message is an Entry (its metadata) and its body, the
// message as mxgate would have delivered it (its Received and X-Spam-*
// headers included), compressed with zstd. Both live behind Store, which
// has two implementations with the same semantics: LocalStore, a bbolt
// file in the data dir of a standalone node, and the cluster's replicated
// store (cluster/quarantine.go), whose commands apply the same bbolt
// transactions (the *Tx functions of tx.go) on every node.
//
// # States
//
//	held --Claim--> claimed --Confirm--> released
//	  ^                |
//	  +----Unclaim-----+      held or a stale claim --Delete--> deleted
//
// Release is exactly once: Claim is one write, and the first applied wins
// (the others get ErrClaimed, or ErrReleased once it is done). The winner
// spools the message into its own delivery queue, fsynced, and then
// confirms. A claim older than ClaimTimeout can be taken over by another
// Claim, so a node that dies after winning does not strand the message:
// Releaser.Recover, run on the leader (every node of its own accord for a
// standalone one), completes releases whose claimant went silent. A node
// that dies after its spool committed and before its Confirm applied gets
// the message delivered twice (by itself after restart and by the node
// that took the claim over), never zero times, as the spool itself does.
//
// Entries expire by their own ExpiresAt (set at Put from
// quarantine.lifetime or quarantine.rejected_lifetime), with the time the
// caller gives (in a cluster, the leader's CmdExpire), never the local
// clock inside a transaction.
//
// The total size of stored bodies is capped (quarantine.max_bytes): a Put
// over the cap fails with ErrFull, which the SMTP session answers 451
// 4.3.0 (or refuses, with quarantine.on_full: reject).
package quarantine
