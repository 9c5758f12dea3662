// Package smarthost is the durable spool and the queue runner of an mxgate
// node: it stores every accepted message on local disk before the SMTP server
// answers 250, then delivers it to the backend mailbox servers (relay
// domains) or to the Internet (MX lookup, per-domain transports), retrying
// with backoff and bouncing with RFC 3464 delivery status notifications.
//
// # Spool layout
//
//	Dir/tmp/<id>      draft body being received; envelope temp files (<id>.env)
//	Dir/msg/<id>      committed body: the bytes delivered after Envelope.Prepend
//	Dir/env/<id>      committed envelope (JSON); its existence is the commit marker
//
// # Guarantees
//
// Commit returns nil only after the body file, the envelope file and both
// directories holding them have been fsynced, so a message acknowledged with
// 250 survives kill -9 and power loss (RFC 5321 §6.1: once the 250 is sent the
// server has taken responsibility for the message). Directory fsyncs are
// group-committed: concurrent commits share one fsync per directory.
//
// An fsync failure poisons the spool: every later Commit fails (the gateway
// then answers 451 4.3.0) until the process is restarted, because after a
// failed fsync the kernel may have dropped dirty pages and retrying would
// report durability that does not exist.
//
// On Open, everything in tmp is deleted (drafts were never acknowledged), a
// body without an envelope is deleted, and an envelope without a body or
// that cannot be parsed is logged and deleted: both can only exist if the
// process died before Commit returned.
//
// Delivery state is written back by atomically replacing the envelope
// (temp file, fsync, rename, directory fsync). A recipient recorded as
// delivered is never delivered again; a crash between the remote 250 and that
// write causes a duplicate, never a loss. When every recipient is final the
// envelope is removed first, then the body.
package smarthost
