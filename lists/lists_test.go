package lists

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/mxgate/mxgate/filter"
)

func TestNewEntry(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		list, value string
		kind        Kind
		norm        string
		bad         bool
	}{
		{"block", "192.0.2.7", KindNetwork, "192.0.2.7/32", false},
		{"block", "192.0.2.77/24", KindNetwork, "192.0.2.0/24", false},
		{"allow", "2001:DB8::1", KindNetwork, "2001:db8::1/128", false},
		{"allow", "Partner@Example.COM", KindAddress, "partner@example.com", false},
		{"BLOCK", "Spam.Example.", KindDomain, "spam.example", false},
		{"block", "localhost", "", "", true},
		{"block", "a b@example.com", "", "", true},
		{"block", "@example.com", "", "", true},
		{"grey", "example.com", "", "", true},
		{"block", "", "", "", true},
	} {
		l, lerr := ParseList(tc.list)
		e, err := NewEntry(l, tc.value, "", now)
		if tc.bad {
			if err == nil && lerr == nil {
				t.Errorf("%s %q accepted: %+v", tc.list, tc.value, e)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("%s %q: %v does not wrap ErrInvalid", tc.list, tc.value, err)
			}
			continue
		}
		if err != nil || e.Kind != tc.kind || e.Value != tc.norm {
			t.Errorf("%s %q: %+v, %v; want %s %q", tc.list, tc.value, e, err, tc.kind, tc.norm)
		}
	}
}

func mustEntry(t *testing.T, l List, v string) Entry {
	t.Helper()
	e, err := NewEntry(l, v, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestMatcher(t *testing.T) {
	m := Compile([]Entry{
		mustEntry(t, Block, "198.51.100.0/24"),
		mustEntry(t, Block, "spammer@bad.example"),
		mustEntry(t, Block, "evil.example"),
		mustEntry(t, Allow, "partner.example"),
	})
	ip := netip.MustParseAddr
	for _, tc := range []struct {
		list List
		ip   string
		from string
		want string
	}{
		{Block, "198.51.100.9", "anyone@example.org", "198.51.100.0/24"},
		{Block, "::ffff:198.51.100.9", "", "198.51.100.0/24"},
		{Block, "192.0.2.1", "Spammer@Bad.Example", "spammer@bad.example"},
		{Block, "192.0.2.1", "other@bad.example", ""},
		{Block, "192.0.2.1", "x@mail.evil.example", "evil.example"},
		{Block, "192.0.2.1", "x@notevil.example", ""},
		{Allow, "192.0.2.1", "x@partner.example", "partner.example"},
		{Block, "192.0.2.1", "x@partner.example", ""},
		{Block, "192.0.2.1", "", ""},
	} {
		e, ok := m.Match(tc.list, ip(tc.ip), tc.from)
		if got := map[bool]string{true: e.Value}[ok]; got != tc.want {
			t.Errorf("Match(%s, %s, %q) = %q, want %q", tc.list, tc.ip, tc.from, got, tc.want)
		}
	}
}

func TestFileStoreAndCheck(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "lists.json")
	s, err := OpenFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	c := &Check{Store: s, Logger: slog.New(slog.DiscardHandler)}
	conn := &filter.Conn{IP: netip.MustParseAddr("192.0.2.1")}
	if r := c.CheckSender(ctx, &filter.Sender{Conn: conn, From: "a@bad.example"}); r.Action != filter.Accept {
		t.Fatalf("empty lists refused: %+v", r)
	}
	if err := s.Put(ctx, mustEntry(t, Block, "bad.example")); err != nil {
		t.Fatal(err)
	}
	r := c.CheckSender(ctx, &filter.Sender{Conn: conn, From: "a@bad.example"})
	if r.Action != filter.Reject || r.Reply.Code != 554 || r.Reply.Enhanced != [3]int{5, 7, 1} || r.Reason != Reason {
		t.Fatalf("blocked sender: %+v", r)
	}
	if r := c.CheckSender(ctx, &filter.Sender{Conn: &filter.Conn{IP: conn.IP, Trusted: true}, From: "a@bad.example"}); r.Action != filter.Accept {
		t.Errorf("trusted client refused: %+v", r)
	}
	if err := s.Put(ctx, mustEntry(t, Allow, "192.0.2.0/24")); err != nil {
		t.Fatal(err)
	}
	if r := c.CheckBody(ctx, &filter.Body{Conn: conn, From: "x@example.org"}); !r.Allow {
		t.Errorf("allowed network: %+v", r)
	}
	// The lists survive a restart.
	s2, err := OpenFileStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if es, _ := s2.Entries(ctx); len(es) != 2 {
		t.Fatalf("after reopening: %v", es)
	}
	if ok, err := s2.Delete(ctx, Block, "BAD.example"); !ok || err != nil {
		t.Fatalf("delete: %v %v", ok, err)
	}
	c2 := &Check{Store: s2}
	if r := c2.CheckSender(ctx, &filter.Sender{Conn: conn, From: "a@bad.example"}); r.Action != filter.Accept {
		t.Errorf("deleted entry still blocks: %+v", r)
	}
}
