package smarthost

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// envelopeVersion is written into every envelope file so a future format can
// be told apart from this one.
const envelopeVersion = 1

// RcptStatus is the delivery state of one recipient.
type RcptStatus string

// Recipient states. Delivered and Failed are final.
const (
	RcptPending   RcptStatus = "pending"
	RcptDelivered RcptStatus = "delivered"
	RcptFailed    RcptStatus = "failed"
)

// Recipient is one forward-path of a message with its delivery state.
type Recipient struct {
	Addr   string     `json:"addr"`
	Status RcptStatus `json:"status"`
	// Notify holds the RFC 3461 §4.1 NOTIFY values (NEVER, SUCCESS, FAILURE,
	// DELAY); empty means the default (FAILURE, DELAY).
	Notify []string `json:"notify,omitempty"`
	// ORcpt is the RFC 3461 §4.2 original recipient, "rfc822;addr".
	ORcpt string `json:"orcpt,omitempty"`

	// Result of the last attempt, for the DSN and for "queue ls".
	LastCode    int       `json:"last_code,omitempty"`
	LastStatus  string    `json:"last_status,omitempty"`
	LastReply   string    `json:"last_reply,omitempty"`
	RemoteMTA   string    `json:"remote_mta,omitempty"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
}

// Envelope is what the queue stores next to the body: the SMTP envelope,
// where the message came from, and the delivery state.
type Envelope struct {
	Version    int       `json:"v"`
	From       string    `json:"from"` // reverse-path, "" for the null sender
	Rcpts      []string  `json:"rcpts"`
	ReceivedAt time.Time `json:"received_at"`
	ClientIP   string    `json:"client_ip,omitempty"`
	Helo       string    `json:"helo,omitempty"`
	// Listener is "inbound", "relay", "submission", or "dsn" for the
	// notifications this package generates.
	Listener string `json:"listener,omitempty"`
	// Prepend holds header lines written before the body at delivery.
	Prepend []byte `json:"prepend,omitempty"`

	// EnvID and Ret are the RFC 3461 §4.4 ENVID and §4.3 RET parameters.
	EnvID string `json:"envid,omitempty"`
	Ret   string `json:"ret,omitempty"`

	// Recipients is the per-recipient state. Commit fills it from Rcpts when
	// it is empty; a caller that has NOTIFY/ORCPT parameters fills it itself.
	Recipients []Recipient `json:"recipients"`
	// Attempts counts delivery attempts of the message.
	Attempts int `json:"attempts"`
	// NextAttempt is when the runner tries the pending recipients again.
	NextAttempt time.Time `json:"next_attempt"`
	// WaitingBackend is set when the last attempt deferred a recipient
	// because no backend was available: the message is retried as soon as
	// one is back, and at once when the spool is opened again, rather
	// than at NextAttempt.
	WaitingBackend bool `json:"waiting_backend,omitempty"`
	// DSNOf is the queue id of the message this DSN reports on.
	DSNOf string `json:"dsn_of,omitempty"`
}

// normalize checks env and makes Rcpts and Recipients agree.
func (env *Envelope) normalize(now time.Time) error {
	env.Version = envelopeVersion
	if len(env.Recipients) == 0 {
		if len(env.Rcpts) == 0 {
			return errors.New("envelope has no recipients")
		}
		env.Recipients = make([]Recipient, len(env.Rcpts))
		for i, r := range env.Rcpts {
			env.Recipients[i] = Recipient{Addr: r}
		}
	} else {
		env.Rcpts = make([]string, len(env.Recipients))
		for i, r := range env.Recipients {
			env.Rcpts[i] = r.Addr
		}
	}
	for i := range env.Recipients {
		r := &env.Recipients[i]
		if r.Addr == "" || strings.ContainsAny(r.Addr, "\r\n") {
			return fmt.Errorf("invalid recipient %q", r.Addr)
		}
		if r.Status == "" {
			r.Status = RcptPending
		}
		r.Notify = cleanNotify(r.Notify)
	}
	// Drop malformed DSN parameters rather than fail every delivery on
	// them: go-smtp refuses to send invalid values.
	switch env.Ret = strings.ToUpper(env.Ret); env.Ret {
	case "", "FULL", "HDRS":
	default:
		env.Ret = ""
	}
	for i := 0; i < len(env.EnvID); i++ {
		if c := env.EnvID[i]; c < 0x20 || c > 0x7e {
			env.EnvID = ""
			break
		}
	}
	if strings.ContainsAny(env.From, "\r\n") {
		return fmt.Errorf("invalid sender %q", env.From)
	}
	if env.ReceivedAt.IsZero() {
		env.ReceivedAt = now
	}
	if env.NextAttempt.IsZero() {
		env.NextAttempt = now
	}
	return nil
}

// clone returns a deep copy of the mutable parts of env.
func (env *Envelope) clone() Envelope {
	c := *env
	c.Rcpts = append([]string(nil), env.Rcpts...)
	c.Recipients = append([]Recipient(nil), env.Recipients...)
	return c
}

// pending returns the indexes of recipients not yet final.
func (env *Envelope) pending() []int {
	var idx []int
	for i, r := range env.Recipients {
		if r.Status == RcptPending {
			idx = append(idx, i)
		}
	}
	return idx
}

// wantsFailureDSN reports whether a failure notice is wanted for r
// (RFC 3461 §4.1: no NOTIFY means FAILURE,DELAY; NEVER means none).
func (r *Recipient) wantsFailureDSN() bool {
	if len(r.Notify) == 0 {
		return true
	}
	for _, n := range r.Notify {
		if strings.EqualFold(n, "FAILURE") {
			return true
		}
	}
	return false
}

// domainOf returns the lower-cased domain of an address, "" if none.
func domainOf(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(addr[at+1:], "."))
}

// cleanNotify keeps the valid RFC 3461 §4.1 NOTIFY values: NEVER alone, or
// a set of SUCCESS, FAILURE and DELAY.
func cleanNotify(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	var out []string
	for _, n := range in {
		n = strings.ToUpper(strings.TrimSpace(n))
		switch n {
		case "NEVER":
			return []string{"NEVER"}
		case "SUCCESS", "FAILURE", "DELAY":
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}
