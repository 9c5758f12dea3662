// Package cluster holds mxgate's membership and replicated state:
//
//   - Cluster (cluster.go): memberlist gossip, encrypted with a shared key,
//     carrying each node's metadata; bootstrap once BootstrapExpect fresh
//     nodes see each other; the leader loop that makes alive members voters,
//     removes voters dead for RemoveDeadAfter, and issues expiry.
//   - Node (node.go): hashicorp/raft with its log and stable store on
//     raft-wal, file snapshots, and one TLS port shared by Raft and write
//     forwarding (mux.go, forward.go): followers forward writes to the
//     leader over pooled connections, with jittered retries while an
//     election runs.
//   - The finite state machine (FSM) below, made of registered domains:
//     one file per kind of replicated state (greylist.go: the triplets and
//     networks, and GreylistStore, the greylist.Store built on them).
//   - TLS material (tls.go): a cluster CA and node certificates that carry
//     ServerName, so a certificate proves membership wherever the node is
//     reached.
//
// # Domains
//
// Each kind of replicated state is a domain, registered from the init
// function of its own file (domain.go has the API, greylist.go an
// example): the command types it applies, the bbolt buckets that hold it,
// which are its section of every snapshot, and its expiry rule, taken from
// the package that owns the state (for the greylist, greylist.Triplet.Expired
// and greylist.Network.Expired). Adding a kind of state (the sender and
// recipient lists, the quarantine) is one new file; the FSM dispatches each
// command to the domain that registered its type, CmdExpire calls every
// domain's expiry rule with the leader's time, and NewFSM and Restore
// create every domain's buckets (a snapshot from before a domain existed
// restores with the domain empty). Chunking (chunk.go) is registered the
// same way but is generic: a completed set is applied as the command it
// carries, whatever its domain.
//
// # Command format
//
// Every Raft log entry the FSM applies is one command: a type byte followed
// by the payload of that type.
//
//	+------+-----------------------------+
//	| type | payload                     |
//	+------+-----------------------------+
//
// Type bytes are declared by the domains' files and never reused. Payloads
// are JSON objects for the small commands (CmdGreylistPutTriplet 0x01,
// CmdGreylistPutNetwork 0x02, CmdExpire 0x03) and a fixed binary header
// plus raw bytes for CmdChunk (0x04), so that a large body (a quarantined
// message) is not inflated by base64:
//
//	CmdChunk: 0x04 | id [16] | index uint32 BE | total uint32 BE |
//	          expiresAt int64 BE (Unix ns) | data...
//
// Use the Encode* functions to build commands and SplitCommand to cut a
// command larger than MaxEntrySize (512 KiB) into CmdChunk entries. The
// chunks of one command may interleave with other entries; when the last
// missing part arrives the parts are joined in index order and the inner
// command is applied, once, in the same bolt transaction.
//
// A type byte with IgnorableFlag (0x80) set marks a command that older
// nodes may skip: its low seven bits name the command, and a node that does
// not know it ignores it instead of stopping (the Consul convention for
// rolling upgrades).
//
// # Guarantees
//
//   - Determinism: the FSM never reads the clock. Times travel inside the
//     commands (CmdExpire carries "now"; chunks carry their own expiry), so
//     every node applying the same log reaches the same state.
//   - No silent divergence: an unknown type without IgnorableFlag, a payload
//     of a known type that cannot be decoded, or a local storage failure
//     while applying panics, stopping the node rather than letting its state
//     drift from the others.
//   - Semantic errors are answers, not panics: an entry that decodes but is
//     invalid (empty key, chunk index out of range...) changes nothing and
//     Apply returns an error value, which Raft hands back to the proposer
//     through ApplyFuture.Response. A command that returns an error has made
//     no change (its bolt transaction is rolled back).
//   - Bounded memory: state, and the parts of chunked commands not yet
//     complete, live in a bbolt file under the directory given to NewFSM.
//     Partial chunks are therefore also in snapshots.
//   - Snapshots stream a consistent copy of the bbolt file from a read
//     transaction taken in Snapshot; Apply goes on meanwhile. Restore writes
//     the snapshot to a new file, opens it, and only then swaps it in under
//     the lock: the live file is never modified in place, and a bad snapshot
//     leaves the current state untouched.
//   - The FSM file is not a source of truth: NewFSM starts from an empty
//     file (Raft restores the last snapshot and replays the log after it),
//     which is why bbolt runs without fsync.
//
// Reads (the greylist's GetTriplet, GetNetwork) are served from the local
// bbolt file in a read-only transaction, possibly slightly behind the
// leader.
package cluster
