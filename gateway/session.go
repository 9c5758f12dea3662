package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/smarthost"
)

// session is one SMTP conversation on one listener. go-smtp creates it at
// EHLO/HELO and calls Reset between transactions.
type session struct {
	srv    *Server
	policy *Policy
	conn   *smtp.Conn
	guard  *guardConn
	ip     netip.Addr
	id     string // session id in the mail log
	log    *slog.Logger
	// ctx ends when the client goes (Logout) or the node stops for good.
	ctx    context.Context
	cancel context.CancelFunc
	fconn  filter.Conn // what the checks know of the client

	from    string
	hasFrom bool
	rcpts   []string
	// deferred maps a recipient to the checks that decide it at the end
	// of DATA (the greylisting of bounces).
	deferred map[string][]filter.Deferral
}

func (s *session) Reset() {
	s.from, s.hasFrom, s.rcpts, s.deferred = "", false, nil, nil
}

func (s *session) Logout() error {
	s.cancel()
	metricSessions.WithLabelValues(s.policy.Name).Dec()
	return nil
}

// refuse counts, logs and returns the reply for r: every refusal of a
// session goes through here.
func (s *session) refuse(r reason, detail string, attrs ...any) error {
	return s.refuseWith(reply(r, detail), string(r), attrs...)
}

// refuseDecision refuses as a pipeline decision says, with the deciding
// check's log attributes after attrs.
func (s *session) refuseDecision(d filter.Decision, attrs ...any) error {
	e := &smtp.SMTPError{Code: d.Reply.Code, EnhancedCode: smtp.EnhancedCode(d.Reply.Enhanced), Message: d.Reply.Text}
	return s.refuseWith(e, d.Reason, append(attrs, d.LogAttrs...)...)
}

func (s *session) refuseWith(e *smtp.SMTPError, r string, attrs ...any) error {
	metricMessages.WithLabelValues(s.policy.Name, outcome(e), r).Inc()
	args := append([]any{"event", "reject", "session", s.id, "listener", s.policy.Name, "client_ip", s.ip.String(),
		"reason", r, "reply", replyText(e)}, attrs...)
	s.log.Info("refused", args...)
	return e
}

// ended refuses every command once the guard has ended the session: the
// client was told 421 and nothing it pipelined after that is acted on.
func (s *session) ended() error {
	if why := s.guard.Dead(); why != "" {
		return reply(reasonLostConnection, why)
	}
	return nil
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if err := s.ended(); err != nil {
		return err
	}
	if s.srv.draining.Load() {
		return s.refuse(reasonShuttingDown, "")
	}
	if s.hasFrom {
		// A second MAIL would silently drop the recipients already
		// acknowledged with 250 (RFC 5321 §4.1.4: 503 bad sequence).
		return s.refuse(reasonNestedMail, "", "from", truncate(s.from), "new_from", truncate(from))
	}
	if from != "" && !validAddress(from) {
		return s.refuse(reasonBadSender, "", "from", truncate(from))
	}
	from = quoteLocalPart(from)
	// EHLO may come again, and STARTTLS before it.
	s.fconn.Helo, s.fconn.TLS = s.conn.Hostname(), s.guard.TLSState() != nil
	if d := s.policy.Pipeline.Sender(s.ctx, &filter.Sender{Conn: &s.fconn, From: from}); d.Refused() {
		return s.refuseDecision(d, "from", truncate(from))
	}
	s.from, s.hasFrom, s.rcpts, s.deferred = from, true, s.rcpts[:0], nil
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if err := s.ended(); err != nil {
		return err
	}
	if strings.EqualFold(to, "postmaster") {
		// RFC 5321 §4.1.1.3: <Postmaster> without a domain must be
		// accepted; it means this host's postmaster.
		to = "postmaster@" + s.srv.postmasterDomain()
	}
	if !validAddress(to) {
		return s.refuse(reasonBadRecipient, "", "from", truncate(s.from), "rcpt", truncate(to))
	}
	if len(s.rcpts) >= s.srv.cfg.MaxRecipients {
		return s.refuse(reasonTooManyRecipients, "", "from", truncate(s.from), "rcpt", truncate(to))
	}
	if !s.srv.isLocalDomain(domainOf(to)) && !s.policy.mayRelay(&s.fconn) {
		return s.refuse(reasonRelayDenied, "", "from", truncate(s.from), "rcpt", truncate(to))
	}
	if !s.fconn.Trusted && hasRouting(to) {
		return s.refuse(reasonRoutingAddress, "", "from", truncate(s.from), "rcpt", truncate(to))
	}
	to = quoteLocalPart(to)
	d := s.policy.Pipeline.Rcpt(s.ctx, &filter.Recipient{Conn: &s.fconn, From: s.from, Rcpt: to})
	if d.Refused() {
		return s.refuseDecision(d, "from", truncate(s.from), "rcpt", truncate(to))
	}
	if len(d.Deferred) > 0 {
		if s.deferred == nil {
			s.deferred = map[string][]filter.Deferral{}
		}
		s.deferred[to] = d.Deferred
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	start := time.Now()
	if err := s.ended(); err != nil {
		return err
	}
	if !s.srv.queue.Ready() {
		return s.refuse(reasonNotReady, "")
	}
	draft, err := s.srv.queue.NewDraft()
	if err != nil {
		return s.refuse(reasonSpoolError, "", "error", err.Error())
	}
	// Abort is a no-op once the draft is committed; on every other path
	// it removes the partial files.
	defer draft.Abort()
	id := draft.ID()

	tlsState := s.guard.TLSState()
	rcpts := append([]string(nil), s.rcpts...)
	copier := newBodyCopier(draft, s.srv.cfg.MaxMessageBytes, s.srv.cfg.Hostname)
	size, err := copier.copyFrom(&deadlineReader{r: r, conn: s.conn.Conn(), timeout: s.srv.cfg.DataTimeout})
	var spoolErr *spoolWriteError
	switch {
	case err == nil && s.guard.Truncated():
		// The last BDAT chunk ended before its announced size: the
		// client went away and never saw a reply, so it still has the
		// message. Storing the fragment would deliver a broken copy
		// and, after the client's retry, a duplicate.
		return s.refuse(reasonLostConnection, "", "queue_id", id, "from", truncate(s.from), "after", "BDAT", "size", size)
	case s.guard.Dead() != "":
		// A timeout or a disconnect: the guard has answered the client
		// if it could.
		return s.refuse(reasonLostConnection, "", "queue_id", id, "from", truncate(s.from), "after", "DATA", "why", s.guard.Dead())
	case err == nil:
	case errors.As(err, &spoolErr):
		return s.refuse(reasonSpoolError, "", "queue_id", id, "error", err.Error())
	case errors.Is(err, errTooLarge), errors.Is(err, smtp.ErrDataTooLarge):
		return s.refuse(reasonMessageTooLarge, fmt.Sprintf("%d bytes at most", s.srv.cfg.MaxMessageBytes), "queue_id", id, "from", truncate(s.from))
	case errors.Is(err, errBareCR):
		return s.refuse(reasonBareCR, "", "queue_id", id, "from", truncate(s.from))
	case errors.Is(err, errTooManyHops):
		return s.refuse(reasonMailLoop, "", "queue_id", id, "from", truncate(s.from))
	default:
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			// The client aborted a BDAT transfer or the like: go-smtp
			// already knows what to answer.
			return se
		}
		return s.refuse(reasonDataError, "", "queue_id", id, "error", err.Error())
	}

	dataEnd := time.Now()
	if err := draft.Flush(); err != nil {
		return s.refuse(reasonSpoolError, "", "queue_id", id, "error", err.Error())
	}
	msg, err := filter.OpenMessage(id, draft.Path())
	if err != nil {
		return s.refuse(reasonSpoolError, "", "queue_id", id, "error", err.Error())
	}
	d := s.policy.Pipeline.Body(s.ctx, &filter.Body{Conn: &s.fconn, From: s.from, Rcpts: rcpts, Msg: msg}, s.deferred)
	// Our headers go before the client's bytes at delivery: the trace
	// header first (RFC 5321 §4.4), then the checks' headers.
	prepend := receivedHeader(s.conn.Hostname(), s.ip, s.srv.cfg.Hostname, id, tlsState, rcpts, start)
	for _, h := range d.Headers {
		prepend = fmt.Appendf(prepend, "%s: %s\r\n", h.Name, h.Value)
	}
	qkind, quarantined := quarantineKind(s.policy.Quarantine, &d)
	if d.Refused() && !quarantined {
		if qkind == KindRejected {
			// A copy for the operator; the sender gets its refusal
			// whatever becomes of it.
			qm := s.quarantined(qkind, id, &d, append(prepend, refusedSpamHeaders(&d)...), draft, msg, start)
			if err := s.keep(qm); err != nil {
				s.log.Warn("a copy of refused spam could not be kept", "event", "quarantine_error", "session", s.id,
					"queue_id", id, "from", truncate(s.from), "error", err.Error())
			}
		}
		return s.refuseDecision(d, "queue_id", id, "from", truncate(s.from))
	}
	if quarantined {
		if err := s.ended(); err != nil {
			return err
		}
		// Kept before the 250, in place of delivery: the id the client
		// is told is the quarantine's.
		if err := s.keep(s.quarantined(qkind, id, &d, prepend, draft, msg, start)); err != nil {
			e, r := quarantineReply(err)
			return s.refuseWith(e, r, "queue_id", id, "from", truncate(s.from), "quarantine", string(qkind), "error", err.Error())
		}
		return s.accept(id, rcpts, size, tlsState != nil, dataEnd, copier.dropped, &d, "quarantined", id, "quarantine", string(qkind))
	}

	env := smarthost.Envelope{
		From:       s.from,
		Rcpts:      rcpts,
		ReceivedAt: start,
		ClientIP:   s.ip.String(),
		Helo:       sanitizeHelo(s.conn.Hostname()),
		Listener:   s.policy.Name,
		Prepend:    prepend,
	}
	if err := s.ended(); err != nil {
		return err
	}
	if err := s.srv.queue.Commit(draft, env); err != nil {
		return s.refuse(reasonSpoolError, "", "queue_id", id, "error", err.Error())
	}
	return s.accept(id, rcpts, size, tlsState != nil, dataEnd, copier.dropped, &d)
}

// accept counts and logs an accepted message (delivered or quarantined,
// the attributes say) and returns its 250 reply.
func (s *session) accept(id string, rcpts []string, size int64, tls bool, dataEnd time.Time, dropped int, d *filter.Decision, attrs ...any) error {
	s.guard.messageAccepted()
	reason := "none"
	if len(attrs) > 0 {
		reason = "quarantined"
	}
	metricMessages.WithLabelValues(s.policy.Name, "accepted", reason).Inc()
	metricMessageBytes.WithLabelValues(s.policy.Name).Observe(float64(size))
	metricAcceptDuration.WithLabelValues(s.policy.Name).Observe(time.Since(dataEnd).Seconds())
	args := []any{"event", "accept", "session", s.id, "listener", s.policy.Name, "client_ip", s.ip.String(),
		"queue_id", id, "from", s.from, "rcpts", rcpts, "size", size, "tls", tls}
	args = append(args, attrs...)
	if d.Action == filter.Quarantine && len(attrs) == 0 {
		// No quarantine on this listener: the message is tagged and
		// delivered, and the log says it would have been kept.
		args = append(args, "would_quarantine", true)
	}
	if dropped > 0 {
		// X-Spam-* and our own Authentication-Results from outside.
		args = append(args, "forged_headers_removed", dropped)
	}
	s.log.Info("accepted", append(args, d.LogAttrs...)...)
	return accepted(id)
}

// quarantined describes the message for the quarantine.
func (s *session) quarantined(kind QuarantineKind, id string, d *filter.Decision, header []byte, draft *smarthost.Draft, msg *filter.Message, start time.Time) *QuarantinedMessage {
	return &QuarantinedMessage{
		ID: id, Kind: kind, Received: start, ClientIP: s.ip.String(), Helo: sanitizeHelo(s.conn.Hostname()),
		From: s.from, Rcpts: append([]string(nil), s.rcpts...), Subject: msg.View().Subject,
		Score: d.Score, Symbols: filter.SymbolList(d.Symbols), Virus: logAttr(d.LogAttrs, "virus"),
		Header: header, Path: draft.Path(), Size: int64(len(header)) + draft.Size(),
	}
}

// keep hands a message to the quarantine, bounded in time.
func (s *session) keep(m *QuarantinedMessage) error {
	ctx, cancel := context.WithTimeout(s.ctx, quarantineTimeout)
	defer cancel()
	return s.policy.Quarantine.Keep(ctx, m)
}

// validAddress checks a path that go-smtp has already parsed for the limits
// of RFC 5321 §4.5.3.1 (local part 64 octets, domain 255, path 256) and
// for characters that must not reach a header or a log line.
func validAddress(addr string) bool {
	if len(addr) > 254 {
		return false
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 || at > 64 {
		return false
	}
	for i := 0; i < len(addr); i++ {
		if c := addr[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return validDomain(addr[at+1:])
}

// validDomain accepts a domain name (ASCII or UTF-8 labels) or an address
// literal; go-smtp takes whatever follows the @ up to a space or '>'.
func validDomain(d string) bool {
	if d == "" || len(d) > 255 {
		return false
	}
	if d[0] == '[' {
		return d[len(d)-1] == ']' && !strings.ContainsAny(d[1:len(d)-1], "[]\\")
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c >= 0x80) {
			return false
		}
	}
	return !strings.HasPrefix(d, ".") && !strings.Contains(d, "..")
}

// hasRouting tells whether an address's local part carries a route to
// another host: user%host, host!user or "user@host" (RFC 5321 §3.6.1,
// Appendix C). A backend that honours these would relay for anyone.
func hasRouting(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	return at > 0 && strings.ContainsAny(addr[:at], "%!@")
}

// quoteLocalPart restores the quotes go-smtp removed when it parsed the
// path: a local part that is not a dot-string (RFC 5321 §4.1.2) is quoted
// again, so that the next hop reads the same address, never
// <"a@b"@c> as <a@b@c>.
func quoteLocalPart(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || isDotString(addr[:at]) {
		return addr
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < at; i++ {
		if c := addr[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(addr[i])
	}
	b.WriteByte('"')
	b.WriteString(addr[at:])
	return b.String()
}

// isDotString reports whether s is atoms of atext joined by single dots.
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c >= 0x80, c == '.':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func domainOf(addr string) string {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return strings.ToLower(strings.TrimSuffix(addr[at+1:], "."))
	}
	return ""
}

// truncate bounds hostile strings before they reach the log.
func truncate(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}
