package quarantine

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Reason is why a message was kept.
type Reason string

const (
	// ReasonSpam: scored between spam.quarantine and spam.reject; the
	// sender got 250.
	ReasonSpam Reason = "spam"
	// ReasonVirus: a virus, kept with quarantine.viruses; the sender
	// got 250.
	ReasonVirus Reason = "virus"
	// ReasonRejected: refused as spam (550) and kept as a copy for
	// quarantine.rejected_lifetime.
	ReasonRejected Reason = "rejected"
)

// ParseReason checks a reason name ("" is no reason: any, in filters).
func ParseReason(s string) (Reason, error) {
	switch r := Reason(strings.ToLower(s)); r {
	case "", ReasonSpam, ReasonVirus, ReasonRejected:
		return r, nil
	}
	return "", fmt.Errorf("%w: reason %q: want spam, virus or rejected", ErrInvalid, s)
}

// State is where an entry is in its life.
type State string

const (
	StateHeld     State = "held"
	StateClaimed  State = "claimed"  // a node is releasing it
	StateReleased State = "released" // spooled for delivery; the body is gone
	StateDeleted  State = "deleted"  // removed by an operator; the body is gone
)

// ParseState checks a state name ("" is any).
func ParseState(s string) (State, error) {
	switch st := State(strings.ToLower(s)); st {
	case "", StateHeld, StateClaimed, StateReleased, StateDeleted:
		return st, nil
	}
	return "", fmt.Errorf("%w: state %q: want held, claimed, released or deleted", ErrInvalid, s)
}

// ClaimTimeout is how old a claim must be before another Claim may take
// it over: far longer than spooling one message takes, so that a live
// claimant is never overtaken (Releaser gives up its own claim at half of
// it), short enough that an operator does not wait long for a release
// whose node died.
const ClaimTimeout = 2 * time.Minute

// staleClaimExpiry is how long a claim nobody completed keeps an expired
// entry from being removed.
const staleClaimExpiry = 24 * time.Hour

// Entry is the metadata of one quarantined message.
type Entry struct {
	// ID is the queue id the sender was told (for a rejected copy, the
	// id of the refused transaction): lower-case letters and digits.
	ID       string    `json:"id"`
	Time     time.Time `json:"time"` // when the message was received
	Node     string    `json:"node"` // the node that received it
	ClientIP string    `json:"client_ip,omitempty"`
	Helo     string    `json:"helo,omitempty"`
	Sender   string    `json:"sender"` // "" for the null sender
	// Recipients are the envelope recipients.
	Recipients []string `json:"recipients"`
	Subject    string   `json:"subject,omitempty"`
	Score      float64  `json:"score"`
	// Symbols are NAME=score, strongest first.
	Symbols []string `json:"symbols,omitempty"`
	Reason  Reason   `json:"reason"`
	Virus   string   `json:"virus,omitempty"`
	// Size is the message's size as it would have been delivered;
	// Stored the compressed body's, 0 once the body is gone.
	Size   int64 `json:"size"`
	Stored int64 `json:"stored"`
	// ExpiresAt is when the entry is removed.
	ExpiresAt time.Time `json:"expires_at"`

	State State `json:"state"`
	// Claimant and ClaimedAt name the node releasing (or that released)
	// the message and when it claimed it; By is who asked.
	Claimant  string    `json:"claimant,omitempty"`
	ClaimedAt time.Time `json:"claimed_at,omitzero"`
	By        string    `json:"by,omitempty"`
	// ClaimToken identifies the claim (see ClaimRequest.Token).
	ClaimToken string `json:"claim_token,omitempty"`
	// Done is when it was released or deleted; QueueID its id in the
	// releasing node's delivery queue.
	Done    time.Time `json:"done,omitzero"`
	QueueID string    `json:"queue_id,omitempty"`
}

// Bounds of an entry's fields, so that metadata stays small whatever the
// message.
const (
	MaxIDLen      = 64
	MaxRecipients = 1000
	maxField      = 998
	maxSymbols    = 200
	maxBy         = 200
)

// ValidID reports whether id can name an entry: 1 to 64 lower-case
// letters and digits (mxgate's queue ids are 20).
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// check refuses an entry that cannot be stored as it is.
func (e *Entry) check() error {
	switch {
	case !ValidID(e.ID):
		return fmt.Errorf("%w: id %q", ErrInvalid, e.ID)
	case e.Time.IsZero() || e.ExpiresAt.IsZero():
		return fmt.Errorf("%w: entry %s without a time or expiry", ErrInvalid, e.ID)
	case len(e.Recipients) == 0 || len(e.Recipients) > MaxRecipients:
		return fmt.Errorf("%w: entry %s: %d recipients", ErrInvalid, e.ID, len(e.Recipients))
	case len(e.Symbols) > maxSymbols:
		return fmt.Errorf("%w: entry %s: %d symbols", ErrInvalid, e.ID, len(e.Symbols))
	}
	if _, err := ParseReason(string(e.Reason)); err != nil || e.Reason == "" {
		return fmt.Errorf("%w: entry %s: reason %q", ErrInvalid, e.ID, e.Reason)
	}
	for _, s := range append([]string{e.Node, e.ClientIP, e.Helo, e.Sender, e.Subject, e.Virus}, e.Recipients...) {
		if len(s) > maxField {
			return fmt.Errorf("%w: entry %s: a field of %d bytes", ErrInvalid, e.ID, len(s))
		}
	}
	return nil
}

// Expired reports whether the entry is to be removed at now. A claimed
// entry is kept while its release may still complete.
func (e *Entry) Expired(now time.Time) bool {
	if now.Before(e.ExpiresAt) {
		return false
	}
	return e.State != StateClaimed || now.Sub(e.ClaimedAt) >= staleClaimExpiry
}

// StaleClaim reports whether the entry is claimed and the claim is old
// enough at now to be taken over.
func (e *Entry) StaleClaim(now time.Time) bool {
	return e.State == StateClaimed && now.Sub(e.ClaimedAt) >= ClaimTimeout
}

// claim applies a Claim by node at at.
func (e *Entry) claim(node, by string, at time.Time) error {
	switch e.State {
	case StateHeld:
	case StateClaimed:
		if !e.StaleClaim(at) {
			return fmt.Errorf("%w: %s is being released by %s since %s", ErrClaimed, e.ID, e.Claimant, e.ClaimedAt.Format(time.RFC3339))
		}
		if by == "" {
			by = e.By // a takeover completes the first request
		}
	case StateReleased:
		return fmt.Errorf("%w: %s was released by %s at %s", ErrReleased, e.ID, e.By, e.Done.Format(time.RFC3339))
	default:
		return fmt.Errorf("%w: %s", ErrDeleted, e.ID)
	}
	e.State, e.Claimant, e.ClaimedAt, e.By = StateClaimed, node, at, by
	return nil
}

// holds reports whether node's claim made at claimedAt is the entry's.
func (e *Entry) holds(node string, claimedAt time.Time) error {
	if e.State != StateClaimed || e.Claimant != node || !e.ClaimedAt.Equal(claimedAt) {
		return fmt.Errorf("%w: %s is %s (claimant %q)", ErrLostClaim, e.ID, e.State, e.Claimant)
	}
	return nil
}

// Errors of the stores. Each has a code that travels through the
// cluster's log (Code, ErrorOf), so a follower's caller can test for them
// with errors.Is as on the node that applied the write.
var (
	ErrNotFound  = &codeError{"not_found", "quarantine: no such entry"}
	ErrFull      = &codeError{"full", "quarantine: full (quarantine.max_bytes)"}
	ErrClaimed   = &codeError{"claimed", "quarantine: already being released"}
	ErrReleased  = &codeError{"released", "quarantine: already released"}
	ErrDeleted   = &codeError{"deleted", "quarantine: deleted"}
	ErrExists    = &codeError{"exists", "quarantine: an entry with this id exists"}
	ErrLostClaim = &codeError{"lost_claim", "quarantine: the claim is no longer this node's"}
	ErrInvalid   = &codeError{"invalid", "quarantine: invalid request"}
	ErrTooLarge  = &codeError{"too_large", "quarantine: message too large to keep"}
)

var allErrors = []*codeError{ErrNotFound, ErrFull, ErrClaimed, ErrReleased, ErrDeleted, ErrExists, ErrLostClaim, ErrInvalid, ErrTooLarge}

type codeError struct{ code, msg string }

func (e *codeError) Error() string { return e.msg }

// Code is the code of the store error err wraps, "" for any other error
// (a storage failure).
func Code(err error) string {
	var ce *codeError
	if errors.As(err, &ce) {
		return ce.code
	}
	return ""
}

// ErrorOf rebuilds the error of code with its text; an unknown code gives
// a plain error.
func ErrorOf(code, text string) error {
	for _, e := range allErrors {
		if e.code == code {
			if text == "" || text == e.msg {
				return e
			}
			return &detailError{e, text}
		}
	}
	return errors.New(text)
}

type detailError struct {
	base *codeError
	text string
}

func (e *detailError) Error() string { return e.text }
func (e *detailError) Unwrap() error { return e.base }

// Stats is the size of the quarantine.
type Stats struct {
	Entries int64 `json:"entries"` // entries of every state
	Held    int64 `json:"held"`
	// Expired counts the entries ever removed at the end of their
	// lifetime (it only grows).
	Expired int64 `json:"expired"`
	Bytes   int64 `json:"bytes"` // compressed bodies stored
}

// Filter selects entries for List. Zero fields select everything.
type Filter struct {
	// Recipient matches an envelope recipient (case-insensitive).
	Recipient string
	// Sender is an address (exact, case-insensitive) or a domain (the
	// sender's domain or a subdomain of it).
	Sender string
	Reason Reason
	State  State
	// Since and Until bound Time (inclusive).
	Since, Until time.Time
	// Before continues a listing: the Next of the previous page.
	Before string
	// Limit is the page size: DefaultLimit when 0, at most MaxLimit.
	Limit int
}

// Paging bounds.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
	// maxScan bounds the entries one List call reads; past it the page
	// ends early with Next set.
	maxScan = 100_000
)

// Page is one page of a listing, newest first.
type Page struct {
	Entries []Entry `json:"entries"`
	// Next, when not empty, is the Before of the next page.
	Next string `json:"next,omitempty"`
}

func (f *Filter) match(e *Entry) bool {
	if f.Reason != "" && e.Reason != f.Reason || f.State != "" && e.State != f.State {
		return false
	}
	if !f.Since.IsZero() && e.Time.Before(f.Since) || !f.Until.IsZero() && e.Time.After(f.Until) {
		return false
	}
	if f.Recipient != "" {
		found := false
		for _, r := range e.Recipients {
			found = found || strings.EqualFold(r, f.Recipient)
		}
		if !found {
			return false
		}
	}
	if f.Sender != "" {
		s, want := strings.ToLower(e.Sender), strings.ToLower(f.Sender)
		if strings.Contains(want, "@") {
			return s == want
		}
		at := strings.LastIndexByte(s, '@')
		d := s[at+1:]
		return at >= 0 && (d == want || strings.HasSuffix(d, "."+want))
	}
	return true
}

func (f *Filter) limit() int {
	switch {
	case f.Limit <= 0:
		return DefaultLimit
	case f.Limit > MaxLimit:
		return MaxLimit
	}
	return f.Limit
}

// CleanBy makes who released or deleted a message safe for a header line
// and the log: printable, one line, bounded.
func CleanBy(by string) string {
	var b strings.Builder
	for _, r := range by {
		if r < 0x20 || r == 0x7f {
			continue
		}
		if b.Len() >= maxBy {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}
