package userpage

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/safefile"
	"github.com/mxgate/mxgate/quarantine"
)

// Action is what a link lets its holder do.
type Action string

const (
	// ActionView opens the recipient's page (no entry) or one of the
	// recipient's entries with its preview.
	ActionView Action = "view"
	// ActionRelease and ActionDelete act on one entry, by POST only.
	ActionRelease Action = "release"
	ActionDelete  Action = "delete"
	// ActionAllow puts the entry's sender (the address) on the allow
	// list, then releases the entry.
	ActionAllow Action = "allow"
)

// MinKeyBytes is the shortest link key accepted.
const MinKeyBytes = 32

// ReportLinkLifetime is how long the links of a report work.
const ReportLinkLifetime = 14 * 24 * time.Hour

// tokenVersion starts every signed payload; another format gets another
// version and old links stop working rather than being misread.
const tokenVersion = "q1"

// macContext separates these MACs from any other use of the key.
const macContext = "mxgate quarantine link\x00"

// Errors of Verify. All of them are answered 403.
var (
	ErrBadToken = errors.New("quarantine link: invalid or tampered token")
	ErrExpired  = errors.New("quarantine link: expired")
	ErrScope    = errors.New("quarantine link: not valid for this action or message")
)

// Claims is what a token grants: Action on entry ID (empty: the whole
// page) of Recipient's quarantine, until Expires.
type Claims struct {
	Recipient string
	Action    Action
	ID        string
	Expires   time.Time
}

// Signer makes and checks links with the cluster-wide link key.
type Signer struct {
	key []byte
}

// NewSigner signs with key, at least MinKeyBytes long.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("the link key is %d bytes; want at least %d", len(key), MinKeyBytes)
	}
	return &Signer{key: append([]byte(nil), key...)}, nil
}

// LoadKey reads a link key file: base64 (standard encoding) of at least
// MinKeyBytes bytes, mode 0600 (as the gossip key). Every node of a
// cluster has the same file, so a link works on any node.
func LoadKey(path string) ([]byte, error) {
	b, err := safefile.ReadPrivate(path, "quarantine link key", 4096)
	if err != nil {
		return nil, err
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: not base64: %w", path, err)
	}
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("%s: the key is %d bytes; want at least %d (head -c 32 /dev/urandom | base64)", path, len(key), MinKeyBytes)
	}
	return key, nil
}

// NormalizeRecipient is the form of an address a token is bound to.
func NormalizeRecipient(r string) string { return strings.ToLower(strings.TrimSpace(r)) }

func validAction(a Action) bool {
	return a == ActionView || a == ActionRelease || a == ActionDelete || a == ActionAllow
}

// Sign makes the token of c. It fails for claims that cannot be encoded
// unambiguously (an acting token without an entry, a recipient with
// control characters...).
func (s *Signer) Sign(c Claims) (string, error) {
	rcpt := NormalizeRecipient(c.Recipient)
	switch {
	case !validAction(c.Action):
		return "", fmt.Errorf("quarantine link: action %q", c.Action)
	case c.Action != ActionView && c.ID == "":
		return "", fmt.Errorf("quarantine link: %s needs an entry", c.Action)
	case c.ID != "" && !quarantine.ValidID(c.ID):
		return "", fmt.Errorf("quarantine link: entry id %q", c.ID)
	case rcpt == "" || len(rcpt) > 998 || strings.ContainsFunc(rcpt, func(r rune) bool { return r < 0x21 || r == 0x7f }):
		return "", fmt.Errorf("quarantine link: recipient %q", c.Recipient)
	case c.Expires.IsZero():
		return "", errors.New("quarantine link: no expiry")
	}
	payload := strings.Join([]string{tokenVersion, string(c.Action), strconv.FormatInt(c.Expires.Unix(), 10), c.ID, rcpt}, "\n")
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(s.mac([]byte(payload))), nil
}

func (s *Signer) mac(payload []byte) []byte {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte(macContext))
	h.Write(payload)
	return h.Sum(nil)
}

// Parse checks token's signature (in constant time) and expiry at now and
// returns its claims.
func (s *Signer) Parse(token string, now time.Time) (Claims, error) {
	if len(token) > 4096 {
		return Claims{}, ErrBadToken
	}
	p64, m64, ok := strings.Cut(token, ".")
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(p64)
	mac, err2 := enc.DecodeString(m64)
	if !ok || err1 != nil || err2 != nil || !hmac.Equal(mac, s.mac(payload)) {
		return Claims{}, ErrBadToken
	}
	f := strings.Split(string(payload), "\n")
	if len(f) != 5 || f[0] != tokenVersion {
		return Claims{}, ErrBadToken
	}
	exp, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return Claims{}, ErrBadToken
	}
	c := Claims{Action: Action(f[1]), Expires: time.Unix(exp, 0), ID: f[3], Recipient: f[4]}
	if !validAction(c.Action) {
		return Claims{}, ErrBadToken
	}
	if !now.Before(c.Expires) {
		return Claims{}, ErrExpired
	}
	return c, nil
}

// Verify is Parse, then checks that the token grants action on entry id:
// a view token without an entry grants viewing any of its recipient's
// entries; every other token grants exactly its own action and entry.
// The caller still checks that the entry has the token's recipient.
func (s *Signer) Verify(token string, action Action, id string, now time.Time) (Claims, error) {
	c, err := s.Parse(token, now)
	if err != nil {
		return Claims{}, err
	}
	if c.Action != action || (c.ID != id && !(action == ActionView && c.ID == "")) {
		return Claims{}, ErrScope
	}
	return c, nil
}

// HasRecipient reports whether e is addressed to rcpt.
func HasRecipient(e *quarantine.Entry, rcpt string) bool {
	for _, r := range e.Recipients {
		if NormalizeRecipient(r) == NormalizeRecipient(rcpt) {
			return true
		}
	}
	return false
}

// Links builds the URLs of the user pages under base (e.g.
// https://mx1.example.com:8025).
type Links struct {
	Base   string
	Signer *Signer
}

// Page is the link to rcpt's page, valid until exp.
func (l Links) Page(rcpt string, exp time.Time) (string, error) {
	t, err := l.Signer.Sign(Claims{Recipient: rcpt, Action: ActionView, Expires: exp})
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(l.Base, "/") + PagePath + "?t=" + t, nil
}

// Entry is the link to one of rcpt's entries (its preview and buttons).
func (l Links) Entry(rcpt, id string, exp time.Time) (string, error) {
	t, err := l.Signer.Sign(Claims{Recipient: rcpt, Action: ActionView, ID: id, Expires: exp})
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(l.Base, "/") + PagePath + "/" + id + "?t=" + t, nil
}
