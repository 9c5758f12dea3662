package gateway

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/filter"
)

// Quarantine keeps messages instead of delivering them (the quarantine
// package behind cmd/mxgate's adapter): mail the pipeline decided to
// quarantine, viruses where configured, and a copy of mail refused as
// spam.
type Quarantine interface {
	// Keeps tells whether messages of kind are kept: KindSpam always;
	// KindVirus and KindRejected as configured.
	Keeps(kind QuarantineKind) bool
	// Keep stores the message durably (in a cluster, committed by a
	// majority) and returns nil only then. An error wrapping
	// ErrQuarantineRefuse asks for the message to be refused for good
	// (quarantine.on_full: reject); any other error is answered 451.
	Keep(ctx context.Context, m *QuarantinedMessage) error
}

// QuarantineKind is why a message is kept.
type QuarantineKind string

const (
	KindSpam     QuarantineKind = "spam"
	KindVirus    QuarantineKind = "virus"
	KindRejected QuarantineKind = "rejected"
)

// ErrQuarantineRefuse, wrapped in Keep's error, refuses the message with
// 550 instead of 451.
var ErrQuarantineRefuse = errors.New("quarantine refuses the message")

// QuarantinedMessage is what the session hands the quarantine: the
// envelope, the verdict, and the message as it would have been delivered
// (Header before the spooled body at Path).
type QuarantinedMessage struct {
	ID       string // the queue id the client is (or would have been) told
	Kind     QuarantineKind
	Received time.Time
	ClientIP string
	Helo     string
	From     string
	Rcpts    []string
	Subject  string
	Score    float64
	Symbols  []string // NAME=score, strongest first
	Virus    string
	// Header holds mxgate's header lines (Received, X-Spam-*), to go
	// before the client's bytes.
	Header []byte
	// Path is the spooled message (the client's bytes); Size its size.
	Path string
	Size int64
}

// quarantineTimeout bounds keeping one message: longer than a cluster
// election, far shorter than the client's patience after DATA.
const quarantineTimeout = 30 * time.Second

// reasonQuarantineError is the metric label of a message that could not
// be kept; reasonQuarantineFull of one refused because the quarantine is
// full (quarantine.on_full: reject).
const (
	reasonQuarantineError = "quarantine_error"
	reasonQuarantineFull  = "quarantine_full"
)

// quarantineReply is the refusal of a message the quarantine could not
// keep: 451 (the sender keeps it and retries) unless the quarantine asks
// for a refusal.
func quarantineReply(err error) (*smtp.SMTPError, string) {
	if errors.Is(err, ErrQuarantineRefuse) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "message refused: quarantine full"}, reasonQuarantineFull
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "temporary failure, try again later"}, reasonQuarantineError
}

// quarantineKind tells whether a body decision puts the message in the
// quarantine, and as what: kept in place of delivery (spam between the
// quarantine and reject levels, a virus with quarantine.viruses), or as a
// copy of a refusal (spam at the reject level).
func quarantineKind(q Quarantine, d *filter.Decision) (kind QuarantineKind, instead bool) {
	if q == nil {
		return "", false
	}
	switch {
	case d.Action == filter.Quarantine:
		return KindSpam, q.Keeps(KindSpam)
	case d.Action == filter.Reject && d.Reason == "virus" && q.Keeps(KindVirus):
		return KindVirus, true
	case d.Action == filter.Reject && d.Reason == filter.SpamReason && q.Keeps(KindRejected):
		return KindRejected, false
	}
	return "", false
}

// logAttr returns the value of key in a decision's log attributes.
func logAttr(attrs []any, key string) string {
	for i := 0; i+1 < len(attrs); i += 2 {
		if k, ok := attrs[i].(string); ok && k == key {
			return fmt.Sprint(attrs[i+1])
		}
	}
	return ""
}

// refusedSpamHeaders are the X-Spam fields of a message refused on its
// score, whose decision carries no headers: the copy kept shows its
// verdict as delivered mail would.
func refusedSpamHeaders(d *filter.Decision) []byte {
	score := strconv.FormatFloat(d.Score, 'f', 2, 64)
	score = strings.TrimRight(strings.TrimRight(score, "0"), ".")
	return fmt.Appendf(nil, "X-Spam-Flag: YES\r\nX-Spam-Score: %s\r\nX-Spam-Status: Yes, score=%s action=reject tests=%s\r\n",
		score, score, strings.Join(filter.SymbolList(d.Symbols), ",\r\n\t"))
}
