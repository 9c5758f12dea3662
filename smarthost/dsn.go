package smarthost

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"
)

// maxReturnedHeaders bounds the original header section copied into a DSN.
const maxReturnedHeaders = 64 << 10

// bounce enqueues one RFC 3464 delivery status notification to env.From for
// the failed recipients idx (those that asked for failure notices, RFC 3461
// §4.1). The caller guarantees env.From is not the null sender, so a
// notification is never sent about a notification (RFC 5321 §6.1).
func (q *Queue) bounce(id string, size int64, env *Envelope, idx []int, now time.Time) error {
	var rcpts []*Recipient
	for _, i := range idx {
		if r := &env.Recipients[i]; r.wantsFailureDSN() {
			rcpts = append(rcpts, r)
		}
	}
	if len(rcpts) == 0 {
		return nil
	}
	headers, err := q.originalHeaders(id, env.Prepend)
	if err != nil {
		return fmt.Errorf("read original headers of %s: %w", id, err)
	}
	d, err := q.NewDraft()
	if err != nil {
		return err
	}
	w := bufio.NewWriter(d)
	writeDSN(w, dsnInput{
		hostname: q.cfg.Hostname,
		dsnID:    d.ID(),
		origID:   id,
		env:      env,
		rcpts:    rcpts,
		headers:  headers,
		now:      now,
	})
	if err := w.Flush(); err != nil {
		d.Abort()
		return fmt.Errorf("write DSN: %w", err)
	}
	dsnEnv := Envelope{
		From:       "",
		Rcpts:      []string{env.From},
		ReceivedAt: now,
		Listener:   "dsn",
		DSNOf:      id,
	}
	if err := q.Commit(d, dsnEnv); err != nil {
		return err
	}
	addrs := make([]string, len(rcpts))
	for i, r := range rcpts {
		addrs[i] = r.Addr
	}
	metricDSNSent.Inc()
	q.log.Info("bounce", "event", "bounce", "queue_id", id, "dsn_id", d.ID(), "to", env.From, "rcpts", addrs)
	return nil
}

// originalHeaders returns Prepend plus the header section of the spooled
// body, cut at a line boundary if it is very long.
func (q *Queue) originalHeaders(id string, prepend []byte) ([]byte, error) {
	f, err := q.openBody(id)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, maxReturnedHeaders)
	start := copy(buf, prepend)
	n, err := io.ReadFull(f.r, buf[start:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, err
	}
	buf = buf[:start+n]
	if end := bytes.Index(buf, []byte("\r\n\r\n")); end >= 0 {
		return buf[:end+2], nil
	}
	if end := bytes.LastIndex(buf, []byte("\r\n")); end >= 0 {
		return buf[:end+2], nil
	}
	return nil, nil
}

type dsnInput struct {
	hostname string
	dsnID    string
	origID   string
	env      *Envelope
	rcpts    []*Recipient
	headers  []byte
	now      time.Time
}

// writeDSN writes a multipart/report message (RFC 6522) of report-type
// delivery-status (RFC 3464 §2) with a human-readable part, the
// machine-readable status and the original headers (text/rfc822-headers).
// Only headers are returned even for RET=FULL, which RFC 3461 §4.3 permits.
func writeDSN(w *bufio.Writer, in dsnInput) {
	const crlf = "\r\n"
	boundary := "=_" + in.dsnID
	date := in.now.Format(time.RFC1123Z)
	p := func(format string, args ...any) {
		fmt.Fprintf(w, format+crlf, args...)
	}

	p("From: Mail Delivery System <MAILER-DAEMON@%s>", in.hostname)
	p("To: <%s>", in.env.From)
	p("Subject: Undelivered Mail Returned to Sender")
	p("Date: %s", date)
	p("Message-ID: <%s@%s>", in.dsnID, in.hostname)
	// RFC 3834 §5: automatic responses are marked so they are not answered.
	p("Auto-Submitted: auto-replied")
	p("MIME-Version: 1.0")
	p("Content-Type: multipart/report; report-type=delivery-status;")
	p("\tboundary=\"%s\"", boundary)
	p("")
	p("This is a MIME-encapsulated message.")
	p("")

	p("--%s", boundary)
	p("Content-Type: text/plain; charset=utf-8")
	p("Content-Description: Notification")
	p("Content-Transfer-Encoding: 8bit")
	p("")
	p("This is the mail system at host %s.", in.hostname)
	p("")
	p("Your message could not be delivered to one or more recipients.")
	p("It is attached below.")
	p("")
	for _, r := range in.rcpts {
		p("<%s>: %s", r.Addr, diagnosticText(r))
	}
	p("")

	p("--%s", boundary)
	p("Content-Type: message/delivery-status")
	p("Content-Description: Delivery report")
	p("")
	// Per-message fields, RFC 3464 §2.2.
	p("Reporting-MTA: dns; %s", in.hostname)
	p("X-Mxgate-Queue-ID: %s", in.origID)
	if in.env.EnvID != "" {
		p("Original-Envelope-Id: %s", oneLine(in.env.EnvID))
	}
	p("Arrival-Date: %s", in.env.ReceivedAt.Format(time.RFC1123Z))
	// Per-recipient fields, RFC 3464 §2.3, each group after a blank line.
	for _, r := range in.rcpts {
		p("")
		if r.ORcpt != "" {
			p("Original-Recipient: %s", oneLine(r.ORcpt))
		}
		p("Final-Recipient: rfc822; %s", r.Addr)
		p("Action: failed")
		p("Status: %s", dsnStatus(r))
		if r.RemoteMTA != "" {
			p("Remote-MTA: dns; %s", r.RemoteMTA)
		}
		if r.LastCode != 0 {
			p("Diagnostic-Code: smtp; %s", diagnosticText(r))
		} else if r.LastReply != "" {
			p("Diagnostic-Code: X-mxgate; %s", oneLine(r.LastReply))
		}
		if !r.LastAttempt.IsZero() {
			p("Last-Attempt-Date: %s", r.LastAttempt.Format(time.RFC1123Z))
		}
	}
	p("")

	p("--%s", boundary)
	p("Content-Type: text/rfc822-headers")
	p("Content-Description: Undelivered message headers")
	p("")
	_, _ = w.Write(in.headers)
	if len(in.headers) > 0 && !bytes.HasSuffix(in.headers, []byte(crlf)) {
		_, _ = w.WriteString(crlf)
	}
	p("")
	p("--%s--", boundary)
}

// dsnStatus returns the RFC 3463 status of a failed recipient.
func dsnStatus(r *Recipient) string {
	if r.LastStatus != "" {
		return r.LastStatus
	}
	if r.LastCode >= 400 && r.LastCode < 600 {
		return fmt.Sprintf("%d.0.0", r.LastCode/100)
	}
	return "5.0.0"
}

// diagnosticText is the remote reply as "550 5.1.1 text".
func diagnosticText(r *Recipient) string {
	var parts []string
	if r.LastCode != 0 {
		parts = append(parts, fmt.Sprint(r.LastCode))
	}
	if r.LastStatus != "" && r.LastCode != 0 {
		parts = append(parts, r.LastStatus)
	}
	if r.LastReply != "" {
		parts = append(parts, oneLine(r.LastReply))
	}
	return strings.Join(parts, " ")
}
