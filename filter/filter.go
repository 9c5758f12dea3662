// Package filter is mxgate's check pipeline. A check looks at one stage of
// an SMTP transaction (the connection, the sender, a recipient, or the
// message once it is spooled) and returns a Result: scored symbols, and,
// when it must, a forced action with its own reply (a virus is refused, a
// greylisted recipient is told to come back). The Pipeline runs the checks
// of a stage concurrently under the session's context and a deadline,
// contains their panics, and merges their results into one Decision that
// the SMTP session acts on: accept, tag, quarantine, reject or tempfail.
//
// Check families live in subpackages (filter/clamav, and next to it the
// sender-authentication, DNS block list, heuristics and Bayes checks); the
// greylist check lives with the greylist policy. The README's "Spam
// filtering" section describes what operators see.
package filter

import (
	"context"
	"fmt"
	"net/netip"
)

// Action is what a decision does with a message or a command, in
// increasing severity: when checks disagree, the most severe wins.
type Action int

const (
	Accept     Action = iota
	Tag               // accept, marked as spam in the added headers
	Quarantine        // keep for review, answer 250
	Tempfail          // answer 4xx: the sender keeps the message and retries
	Reject            // answer 5xx
)

func (a Action) String() string {
	switch a {
	case Accept:
		return "accept"
	case Tag:
		return "tag"
	case Quarantine:
		return "quarantine"
	case Tempfail:
		return "tempfail"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Reply is an SMTP reply a check forces.
type Reply struct {
	Code     int    // 4xx or 5xx
	Enhanced [3]int // RFC 3463 status code
	Text     string
}

func (r Reply) String() string {
	return fmt.Sprintf("%d %d.%d.%d %s", r.Code, r.Enhanced[0], r.Enhanced[1], r.Enhanced[2], r.Text)
}

// Symbol is one named finding of a check, with its score (positive: spam,
// negative: ham). The config's spam.scores override a symbol's score.
type Symbol struct {
	Name   string
	Score  float64
	Detail string // for the log and the X-Spam headers; bounded by the check
}

// Header is a header field a check adds to an accepted message.
type Header struct {
	Name, Value string
}

// Result is what one check says about one stage.
type Result struct {
	Symbols []Symbol
	// Action, when above Accept, is forced whatever the score: Reply
	// (required for Tempfail and Reject) is what the client is told, and
	// Reason the label of mxgate_messages_total (a bounded value; the
	// check's name when empty).
	Action Action
	Reply  *Reply
	Reason string
	// Allow makes the message skip spam scoring: its score gives no
	// action (an operator's allow list). Actions forced by checks, such
	// as a virus, still apply.
	Allow bool
	// Headers are added to the message if it is accepted (in check order).
	Headers []Header
	// LogAttrs are key/value pairs added to the mail-log line of the
	// decision (the reject line, or the accept line).
	LogAttrs []any
	// Defer, from a recipient check, asks to decide this recipient at the
	// end of DATA instead, with the whole envelope known (the greylisting
	// of bounces), before the body checks. The check is called again with
	// Recipient.AtData set.
	Defer bool
	// DeferAfterScore asks the same, after the body checks, with the
	// message's score in Recipient.Score (greylisting by score). It is not
	// asked when the body checks refuse the message.
	DeferAfterScore bool
	// Err is a failure of the check itself (a DNS timeout, Redis down):
	// never a verdict. Its symbols are dropped and replaced by one error
	// symbol scoring 0, so a failing check counts neither as clean nor as
	// spam; an Action it forces still applies (a check that must
	// tempfail when it cannot decide says so explicitly).
	Err error
}

// Conn is what the checks know of the client.
type Conn struct {
	ID       string // session id in the mail log
	Listener string
	IP       netip.Addr
	Helo     string
	TLS      bool
	// Trusted: the client is in mynetworks (or authenticated): our own
	// backends and hosts, which are not greylisted nor scored as strangers.
	Trusted bool
}

// Sender is the MAIL stage.
type Sender struct {
	Conn *Conn
	From string // "" for the null sender
}

// Recipient is the RCPT stage, or, with AtData, a recipient decision
// deferred to the end of DATA.
type Recipient struct {
	Conn   *Conn
	From   string
	Rcpt   string
	AtData bool
	// Score is the message's score, and Symbols the body decision's
	// symbols, for a check that deferred after the score (Scored is then
	// set).
	Score   float64
	Symbols []Symbol
	Scored  bool
}

// Deferral is a recipient decision a check deferred to the end of DATA.
type Deferral struct {
	Check      string
	AfterScore bool
}

// Body is the end-of-DATA stage: the message is in the spool.
type Body struct {
	Conn  *Conn
	From  string
	Rcpts []string
	Msg   *Message
}

// Check is the name every check has: its metric label, its error symbol,
// and the default reason of what it forces.
type Check interface {
	Name() string
}

// ConnCheck decides at the connection (after EHLO).
type ConnCheck interface {
	Check
	CheckConn(ctx context.Context, c *Conn) Result
}

// SenderCheck decides at MAIL.
type SenderCheck interface {
	Check
	CheckSender(ctx context.Context, s *Sender) Result
}

// RcptCheck decides at RCPT, or at the end of DATA when it defers.
type RcptCheck interface {
	Check
	CheckRcpt(ctx context.Context, r *Recipient) Result
}

// BodyCheck decides on the spooled message.
type BodyCheck interface {
	Check
	CheckBody(ctx context.Context, b *Body) Result
}
