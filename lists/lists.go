// Package lists holds the operators' allow and block lists: client
// networks, sender addresses and sender domains. A block entry refuses the
// mail with 554 5.7.1 at MAIL; an allow entry lets the mail skip spam
// scoring (never virus scanning). On a cluster the lists are replicated
// through Raft, so an entry added on one node applies on every node; a
// standalone node keeps them in a file in its data dir. The README's
// "Allow and block lists" section is the operator's view.
package lists

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// List is which list an entry is on.
type List string

const (
	Allow List = "allow"
	Block List = "block"
)

// Kind is what an entry's value matches.
type Kind string

const (
	KindNetwork Kind = "network" // the client's address: 192.0.2.0/24, 2001:db8::/32 or one address
	KindAddress Kind = "address" // the envelope sender: user@example.com
	KindDomain  Kind = "domain"  // the envelope sender's domain and its subdomains: example.com
)

// Entry is one line of a list.
type Entry struct {
	List    List      `json:"list"`
	Kind    Kind      `json:"kind"`
	Value   string    `json:"value"` // normalised
	Added   time.Time `json:"added"`
	Comment string    `json:"comment,omitempty"`
}

// MaxEntries bounds each list, MaxComment an entry's comment.
const (
	MaxEntries = 100_000
	MaxComment = 200
)

// ErrInvalid wraps every refusal of an entry or a list name.
var ErrInvalid = errors.New("invalid list entry")

// ParseList checks a list name.
func ParseList(s string) (List, error) {
	switch l := List(strings.ToLower(s)); l {
	case Allow, Block:
		return l, nil
	}
	return "", fmt.Errorf("%w: list %q is neither allow nor block", ErrInvalid, s)
}

// NewEntry checks and normalises a value for list l: an IP address or
// network, an address with an @, or a domain.
func NewEntry(l List, value, comment string, added time.Time) (Entry, error) {
	if _, err := ParseList(string(l)); err != nil {
		return Entry{}, err
	}
	if len(comment) > MaxComment {
		return Entry{}, fmt.Errorf("%w: comment over %d bytes", ErrInvalid, MaxComment)
	}
	e := Entry{List: l, Added: added.UTC(), Comment: comment}
	v := strings.TrimSpace(value)
	switch {
	case v == "" || len(v) > 254:
		return Entry{}, fmt.Errorf("%w: value %q: empty or too long", ErrInvalid, value)
	case strings.ContainsAny(v, " \t\r\n\x00"):
		return Entry{}, fmt.Errorf("%w: value %q holds spaces or control characters", ErrInvalid, value)
	}
	if p, err := netip.ParsePrefix(v); err == nil {
		e.Kind, e.Value = KindNetwork, p.Masked().String()
		return e, nil
	}
	if a, err := netip.ParseAddr(v); err == nil {
		a = a.Unmap()
		e.Kind, e.Value = KindNetwork, netip.PrefixFrom(a, a.BitLen()).String()
		return e, nil
	}
	if at := strings.LastIndexByte(v, '@'); at >= 0 {
		if at == 0 || at == len(v)-1 || !validDomain(v[at+1:]) {
			return Entry{}, fmt.Errorf("%w: address %q", ErrInvalid, value)
		}
		e.Kind, e.Value = KindAddress, strings.ToLower(v)
		return e, nil
	}
	d := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(v, "."), "."))
	if !validDomain(d) || !strings.Contains(d, ".") {
		return Entry{}, fmt.Errorf("%w: %q is not an IP network, an address or a domain", ErrInvalid, value)
	}
	e.Kind, e.Value = KindDomain, d
	return e, nil
}

func validDomain(d string) bool {
	if d == "" || len(d) > 253 || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") || strings.Contains(d, "..") {
		return false
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c >= 0x80) {
			return false
		}
	}
	return true
}

// Key identifies an entry within the lists: its list and value.
func (e Entry) Key() string { return string(e.List) + "\x00" + e.Value }

// Store keeps the lists. Version changes whenever they do, so that a
// Matcher is rebuilt only then.
type Store interface {
	Put(ctx context.Context, e Entry) error
	Delete(ctx context.Context, l List, value string) (bool, error)
	Entries(ctx context.Context) ([]Entry, error)
	Version(ctx context.Context) (uint64, error)
}

// Matcher answers whether a client and sender are on a list.
type Matcher struct {
	nets    map[List][]netip.Prefix
	entries map[string]Entry // Key -> entry
}

// Compile builds a Matcher from entries.
func Compile(entries []Entry) *Matcher {
	m := &Matcher{nets: map[List][]netip.Prefix{}, entries: map[string]Entry{}}
	for _, e := range entries {
		m.entries[e.Key()] = e
		if e.Kind == KindNetwork {
			if p, err := netip.ParsePrefix(e.Value); err == nil {
				m.nets[e.List] = append(m.nets[e.List], p)
			}
		}
	}
	return m
}

// Match returns the entry of list l that the client ip or the envelope
// sender from matches: the client's network, the full address, or the
// sender's domain or a parent of it.
func (m *Matcher) Match(l List, ip netip.Addr, from string) (Entry, bool) {
	ip = ip.Unmap()
	for _, p := range m.nets[l] {
		if p.Contains(ip) {
			return m.entries[string(l)+"\x00"+p.String()], true
		}
	}
	from = strings.ToLower(from)
	at := strings.LastIndexByte(from, '@')
	if at < 0 {
		return Entry{}, false
	}
	if e, ok := m.entries[string(l)+"\x00"+from]; ok {
		return e, true
	}
	d := from[at+1:]
	for d != "" {
		if e, ok := m.entries[string(l)+"\x00"+d]; ok && e.Kind == KindDomain {
			return e, true
		}
		dot := strings.IndexByte(d, '.')
		if dot < 0 {
			break
		}
		d = d[dot+1:]
	}
	return Entry{}, false
}
