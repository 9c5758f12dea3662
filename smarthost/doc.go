// Package smarthost is the durable spool and the queue runner of an mxgate
// node: it stores every accepted message on local disk before the SMTP server
// answers 250, then delivers it to the backend mailbox servers (relay
// domains) or to the Internet (MX lookup, per-domain transports), retrying
// with backoff and bouncing with RFC 3464 delivery status notifications.
//
// # Spool layout
//
//	Dir/tmp/<id>      draft being received
//	Dir/msg/<id>      committed message: body bytes, then the envelope as a
//	                  trailer (JSON, magic "MXGENV01", length, CRC-32C)
//	Dir/env/<id>      delivery state (the envelope with per-recipient
//	                  results), written only once a delivery attempt has
//	                  changed something; newer than the trailer
//
// # Guarantees
//
// Commit appends the envelope trailer to the draft, fdatasyncs it, renames it
// into msg/ and fsyncs that directory before it returns, so a message
// acknowledged with 250 survives kill -9 and power loss (RFC 5321 §6.1: once
// the 250 is sent the server has taken responsibility for the message). One
// file is created and renamed per message: under a constant fsync load, file
// creation and renames cost more than the writes. Directory fsyncs are
// group-committed: concurrent commits share one fsync.
//
// An fsync failure poisons the spool: every later Commit fails (the gateway
// then answers 451 4.3.0) until the process is restarted, because after a
// failed fsync the kernel may have dropped dirty pages and retrying would
// report durability that does not exist.
//
// On Open, everything in tmp is deleted (drafts were never acknowledged); a
// message file whose trailer is missing or fails its checksum is logged and
// deleted (it can only exist if the process died before Commit returned, or
// the disk is corrupt); delivery state without its message is deleted.
//
// Delivery state is written to env/<id> atomically (temp file, fsync,
// rename, directory fsync). A recipient recorded as
// delivered is never delivered again; a crash between the remote 250 and that
// write causes a duplicate, never a loss. When every recipient is final the
// message file is removed (and that removal fsynced), then its state file.
package smarthost
