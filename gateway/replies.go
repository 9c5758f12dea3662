package gateway

import (
	"fmt"

	"github.com/emersion/go-smtp"
)

// reason names why a command or message was refused by the protocol layer.
// Each reason is a label value of mxgate_messages_total and appears in the
// mail log, and maps to exactly one SMTP reply (README, "SMTP replies").
// Refusals decided by the filter pipeline (virus, greylisted, scan_error,
// spam...) carry their own reply and label, chosen by their check.
type reason string

const (
	reasonRelayDenied       reason = "relay_denied"
	reasonBadSender         reason = "bad_sender"
	reasonBadRecipient      reason = "bad_recipient"
	reasonTooManyRecipients reason = "too_many_recipients"
	reasonMessageTooLarge   reason = "message_too_large"
	reasonBareCR            reason = "bare_cr"
	reasonMailLoop          reason = "mail_loop"
	reasonSpoolError        reason = "spool_error"
	reasonNotReady          reason = "not_ready"
	reasonDataError         reason = "data_error"
	reasonShuttingDown      reason = "shutting_down"
	reasonMaxConnections    reason = "max_connections"
	reasonPerIPConnections  reason = "per_ip_connections"
	reasonNotInMyNetworks   reason = "not_in_mynetworks"
	reasonNestedMail        reason = "nested_mail"
	reasonRoutingAddress    reason = "routing_address"
	reasonLostConnection    reason = "lost_connection"
	reasonTimeout           reason = "timeout"
	reasonLineTooLong       reason = "line_too_long"
	reasonTooManyErrors     reason = "too_many_errors"
	reasonTooManyJunk       reason = "too_many_junk_commands"
	reasonNeedHelo          reason = "need_helo"
	reasonTLSActive         reason = "tls_active"
	reasonTxInProgress      reason = "transaction_in_progress"
	reasonSyntax            reason = "syntax"
)

// reply is the one place where a refusal becomes an SMTP reply. go-smtp
// turns any error that is not a bare *smtp.SMTPError into a permanent
// "554 5.0.0" carrying the error text, so every error a session returns is
// built here. detail, when not empty, is appended to the text.
func reply(r reason, detail string) *smtp.SMTPError {
	e := func(code int, a, b, c int, text string) *smtp.SMTPError {
		if detail != "" {
			text += ": " + detail
		}
		return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{a, b, c}, Message: text}
	}
	switch r {
	case reasonRelayDenied, reasonNotInMyNetworks:
		return e(554, 5, 7, 1, "relay access denied")
	case reasonRoutingAddress:
		// A backend that honours %, ! or a second @ in the local part
		// would relay for strangers (Postfix: allow_untrusted_routing).
		return e(554, 5, 7, 1, "relay access denied: sender-specified routing is not allowed")
	case reasonNestedMail:
		return e(503, 5, 5, 1, "nested MAIL command")
	case reasonNeedHelo:
		return e(503, 5, 5, 1, "send EHLO first")
	case reasonTxInProgress:
		return e(503, 5, 5, 1, "MAIL transaction in progress")
	case reasonTLSActive:
		return e(503, 5, 5, 1, "TLS already active")
	case reasonSyntax:
		return e(501, 5, 5, 4, "syntax error")
	case reasonLineTooLong:
		return e(500, 5, 5, 2, "command line too long")
	case reasonTimeout:
		return e(421, 4, 4, 2, "timeout exceeded")
	case reasonTooManyErrors:
		return e(421, 4, 7, 0, "too many errors")
	case reasonTooManyJunk:
		return e(421, 4, 7, 0, "too many junk commands")
	case reasonLostConnection:
		// Nobody reads this reply: the client is gone.
		return e(451, 4, 4, 2, "lost connection")
	case reasonBadSender:
		return e(501, 5, 1, 7, "bad sender address syntax")
	case reasonBadRecipient:
		return e(501, 5, 1, 3, "bad recipient address syntax")
	case reasonTooManyRecipients:
		return e(452, 4, 5, 3, "too many recipients")
	case reasonMessageTooLarge:
		return e(552, 5, 3, 4, "message size exceeds the limit")
	case reasonBareCR:
		// RFC 5321 §2.3.8: CR and LF only as CRLF. A bare CR is how
		// one MTA can read a message's end differently from the next.
		return e(554, 5, 6, 0, "message contains a bare CR; lines must end with CRLF")
	case reasonMailLoop:
		// RFC 5321 §6.3: too many Received headers means a loop.
		return e(554, 5, 4, 6, "too many hops, mail loop detected")
	case reasonSpoolError:
		return e(451, 4, 3, 0, "temporary failure storing the message, try again later")
	case reasonNotReady:
		return e(451, 4, 3, 0, "service not ready, try again later")
	case reasonDataError:
		return e(451, 4, 3, 0, "error reading the message, try again later")
	case reasonShuttingDown:
		return e(421, 4, 3, 2, "service shutting down, try again later")
	case reasonMaxConnections:
		return e(421, 4, 7, 0, "too many connections, try again later")
	case reasonPerIPConnections:
		return e(421, 4, 7, 0, "too many connections from your address, try again later")
	}
	return e(451, 4, 3, 0, fmt.Sprintf("temporary failure (%s)", r))
}

// outcome returns the outcome label of a reply: tempfailed for 4xx,
// rejected for 5xx.
func outcome(e *smtp.SMTPError) string {
	if e.Code/100 == 4 {
		return "tempfailed"
	}
	return "rejected"
}

// accepted is the reply to a message that is on disk.
func accepted(queueID string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + queueID}
}
