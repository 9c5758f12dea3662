package userpage

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func testSigner(t *testing.T) *Signer {
	t.Helper()
	s, err := NewSigner(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLinkTokens: a token grants its own action on its own entry for its
// recipient until it expires; a changed byte, another key, an expired
// token, another entry or another action is refused.
func TestLinkTokens(t *testing.T) {
	s := testSigner(t)
	now := time.Unix(1_800_000_000, 0)
	exp := now.Add(14 * 24 * time.Hour)
	rel, err := s.Sign(Claims{Recipient: "User@Example.com", Action: ActionRelease, ID: "abc123", Expires: exp})
	if err != nil {
		t.Fatal(err)
	}
	view, _ := s.Sign(Claims{Recipient: "user@example.com", Action: ActionView, Expires: exp})
	viewOne, _ := s.Sign(Claims{Recipient: "user@example.com", Action: ActionView, ID: "abc123", Expires: exp})

	c, err := s.Verify(rel, ActionRelease, "abc123", now)
	if err != nil || c.Recipient != "user@example.com" || c.ID != "abc123" || !c.Expires.Equal(exp) {
		t.Fatalf("valid: %+v %v", c, err)
	}
	if _, err := s.Verify(view, ActionView, "", now); err != nil {
		t.Errorf("page token: %v", err)
	}
	if _, err := s.Verify(view, ActionView, "zzz", now); err != nil {
		t.Errorf("page token on one of the recipient's entries: %v", err)
	}
	if _, err := s.Verify(viewOne, ActionView, "abc123", now); err != nil {
		t.Errorf("entry view token: %v", err)
	}

	other, _ := NewSigner([]byte(strings.Repeat("k", 32)))
	p, m, _ := strings.Cut(rel, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(p)
	forged := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), "user@example.com", "boss@example.com", 1))) + "." + m
	flipped := []byte(rel)
	flipped[len(flipped)-3] ^= 1
	for _, tc := range []struct {
		name, token string
		action      Action
		id          string
		at          time.Time
		want        error
	}{
		{"expired", rel, ActionRelease, "abc123", exp, ErrExpired},
		{"expired later", rel, ActionRelease, "abc123", exp.Add(time.Hour), ErrExpired},
		{"tampered mac", string(flipped), ActionRelease, "abc123", now, ErrBadToken},
		{"wrong recipient (payload changed)", forged, ActionRelease, "abc123", now, ErrBadToken},
		{"other key", mustSign(t, other, Claims{Recipient: "user@example.com", Action: ActionRelease, ID: "abc123", Expires: exp}), ActionRelease, "abc123", now, ErrBadToken},
		{"wrong entry", rel, ActionRelease, "other1", now, ErrScope},
		{"wrong action", rel, ActionDelete, "abc123", now, ErrScope},
		{"view token cannot release", view, ActionRelease, "abc123", now, ErrScope},
		{"entry view token on another entry", viewOne, ActionView, "other1", now, ErrScope},
		{"entry view token as the page", viewOne, ActionView, "", now, ErrScope},
		{"empty", "", ActionView, "", now, ErrBadToken},
		{"garbage", "a.b.c", ActionView, "", now, ErrBadToken},
		{"no mac", p, ActionRelease, "abc123", now, ErrBadToken},
	} {
		if _, err := s.Verify(tc.token, tc.action, tc.id, tc.at); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}

	for _, c := range []Claims{
		{Recipient: "a@b.c", Action: ActionRelease, Expires: exp},          // acting without an entry
		{Recipient: "a@b.c", Action: "admin", Expires: exp},                // unknown action
		{Recipient: "a@b.c\nx", Action: ActionView, Expires: exp},          // a line break
		{Recipient: "a@b.c", Action: ActionView, ID: "../x", Expires: exp}, // bad id
		{Recipient: "a@b.c", Action: ActionView},                           // no expiry
	} {
		if _, err := s.Sign(c); err == nil {
			t.Errorf("signed %+v", c)
		}
	}
}

func mustSign(t *testing.T, s *Signer, c Claims) string {
	t.Helper()
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestLoadKey: base64 of at least 32 bytes in a 0600 file.
func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", base64.StdEncoding.EncodeToString(testKey)+"\n", 0o600)
	if k, err := LoadKey(good); err != nil || string(k) != string(testKey) {
		t.Errorf("good key: %q %v", k, err)
	}
	for name, p := range map[string]string{
		"short":    write("short", base64.StdEncoding.EncodeToString(testKey[:16]), 0o600),
		"readable": write("readable", base64.StdEncoding.EncodeToString(testKey), 0o644),
		"not b64":  write("notb64", "not base64 at all!", 0o600),
		"missing":  filepath.Join(dir, "none"),
	} {
		if _, err := LoadKey(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewSigner(testKey[:31]); err == nil {
		t.Error("NewSigner took a 31-byte key")
	}
}
