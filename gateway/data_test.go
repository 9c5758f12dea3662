package gateway

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func copyAll(t *testing.T, in string, max int64) (string, error) {
	t.Helper()
	var out bytes.Buffer
	c := newBodyCopier(&out, max, "mx.example.net")
	// One byte per read: line-ending state must survive read boundaries.
	_, err := c.copyFrom(iotest.OneByteReader(strings.NewReader(in)))
	return out.String(), err
}

func TestBodyCopierLineEndings(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		err            error
	}{
		{"crlf untouched", "Subject: a\r\n\r\nbody\r\n", "Subject: a\r\n\r\nbody\r\n", nil},
		{"bare lf normalised", "Subject: a\n\nbody\n", "Subject: a\r\n\r\nbody\r\n", nil},
		{"lf dot lf is one line", "a\r\n\r\nx\n.\nMAIL FROM:<e@x>\r\n", "a\r\n\r\nx\r\n.\r\nMAIL FROM:<e@x>\r\n", nil},
		{"lf dot crlf", "a\r\n\r\nx\n.\r\nRCPT TO:<v@y>\r\n", "a\r\n\r\nx\r\n.\r\nRCPT TO:<v@y>\r\n", nil},
		{"bare cr refused", "a\r\n\r\nx\r.\r\n", "", errBareCR},
		{"cr dot cr refused", "a\r\n\r\nx\r\n\r.\r", "", errBareCR},
		{"trailing cr refused", "a\r\n\r\nx\r", "", errBareCR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := copyAll(t, tc.in, 0)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if tc.err == nil && got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBodyCopierSizeLimit(t *testing.T) {
	in := strings.Repeat("0123456789\r\n", 100) // 1200 bytes
	if _, err := copyAll(t, in, 1200); err != nil {
		t.Fatalf("message at the limit refused: %v", err)
	}
	if _, err := copyAll(t, in, 1199); !errors.Is(err, errTooLarge) {
		t.Fatalf("message over the limit: err = %v, want errTooLarge", err)
	}
}

func TestBodyCopierHopCount(t *testing.T) {
	hdr := strings.Repeat("Received: from a by b; date\r\n", maxHops)
	if _, err := copyAll(t, hdr+"\r\nbody\r\n", 0); err != nil {
		t.Fatalf("%d hops refused: %v", maxHops, err)
	}
	if _, err := copyAll(t, hdr+"received: x\r\n\r\nbody\r\n", 0); !errors.Is(err, errTooManyHops) {
		t.Fatalf("%d hops: err = %v, want errTooManyHops", maxHops+1, err)
	}
	// Received lines in the body are not hops.
	if _, err := copyAll(t, "Subject: x\r\n\r\n"+hdr+hdr, 0); err != nil {
		t.Fatalf("Received lines in the body counted: %v", err)
	}
}

// Header fields that forge mxgate's verdict are dropped, whole (with their
// continuation lines), wherever the reads split them; everything else is
// kept byte for byte.
func TestBodyCopierDropsForgedHeaders(t *testing.T) {
	in := "Received: from a\r\n" +
		"X-Spam-Status: No, score=-100\r\n" +
		"x-spam-flag: NO\r\n" +
		"Authentication-Results: mx.example.net;\r\n\tdkim=pass header.d=bank.example\r\n" +
		"Authentication-Results: (comment) MX.example.NET 1; spf=pass\r\n" +
		"Authentication-Results: other.example; spf=fail\r\n" +
		"Subject: X-Spam-Flag: YES in a subject\r\n" +
		"X-Spammy: kept\r\n" +
		"\r\n" +
		"X-Spam-Status: in the body, kept\r\n"
	want := "Received: from a\r\n" +
		"Authentication-Results: other.example; spf=fail\r\n" +
		"Subject: X-Spam-Flag: YES in a subject\r\n" +
		"X-Spammy: kept\r\n" +
		"\r\n" +
		"X-Spam-Status: in the body, kept\r\n"
	var out bytes.Buffer
	c := newBodyCopier(&out, 0, "mx.example.net")
	if _, err := c.copyFrom(iotest.OneByteReader(strings.NewReader(in))); err != nil {
		t.Fatal(err)
	}
	if out.String() != want {
		t.Errorf("got\n%q\nwant\n%q", out.String(), want)
	}
	if c.dropped != 4 {
		t.Errorf("dropped %d fields, want 4", c.dropped)
	}
	// A header section without a body, ending at EOF, is decided too.
	out.Reset()
	c = newBodyCopier(&out, 0, "mx.example.net")
	if _, err := c.copyFrom(strings.NewReader("Subject: a\r\nX-Spam-Score: 0")); err != nil || out.String() != "Subject: a\r\n" {
		t.Errorf("header only: %q, %v", out.String(), err)
	}
}

func FuzzBodyCopier(f *testing.F) {
	for _, s := range []string{"a\r\n\r\nb\r\n", "a\n.\nb", "a\r.\r", "\r\n.\r\n", "Received: x\n\nbody", "\n\r\n\r"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var out bytes.Buffer
		c := newBodyCopier(&out, 1<<20, "mx.example.net")
		_, err := c.copyFrom(strings.NewReader(in))
		if err != nil {
			return
		}
		// Whatever came in, what is stored has CRLF line ends only.
		b := out.Bytes()
		for i, ch := range b {
			if ch == '\r' && (i+1 >= len(b) || b[i+1] != '\n') {
				t.Fatalf("bare CR in output %q", b)
			}
			if ch == '\n' && (i == 0 || b[i-1] != '\r') {
				t.Fatalf("bare LF in output %q", b)
			}
		}
	})
}

func TestReceivedHeader(t *testing.T) {
	h := string(receivedHeader("evil\r\nX-Injected: yes", netip.MustParseAddr("192.0.2.1"), "mx1.example.net", "QID1",
		nil, []string{"a@example.com"}, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
	want := "Received: from evil??X-Injected:?yes ([192.0.2.1])\r\n\tby mx1.example.net (mxgate) with ESMTP id QID1\r\n\tfor <a@example.com>;\r\n\tFri, 02 Jan 2026 03:04:05 +0000\r\n"
	if h != want {
		t.Errorf("got\n%q\nwant\n%q", h, want)
	}
}

func TestValidAddress(t *testing.T) {
	for addr, want := range map[string]bool{
		"user@example.com":                     true,
		"user+tag@example.com":                 true,
		"@example.com":                         false,
		"user@":                                false,
		"user":                                 false,
		strings.Repeat("a", 65) + "@x.example": false,
		"a@" + strings.Repeat("b", 260):        false,
		"us\x00er@example.com":                 false,
	} {
		if got := validAddress(addr); got != want {
			t.Errorf("validAddress(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestConnLimiter(t *testing.T) {
	l := newConnLimiter(3, 2, nil)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	if r1, r2 := l.acquire(a), l.acquire(a); r1 != "" || r2 != "" {
		t.Fatal("first two connections refused")
	}
	if r := l.acquire(a); r != reasonPerIPConnections {
		t.Fatalf("third from one address: %q, want per-IP refusal", r)
	}
	if l.acquire(b) != "" {
		t.Fatal("other address refused")
	}
	if r := l.acquire(b); r != reasonMaxConnections {
		t.Fatalf("fourth in total: %q, want total refusal", r)
	}
	l.release(a)
	if l.acquire(b) != "" {
		t.Fatal("slot not given back")
	}
}

func TestConnLimiterExempt(t *testing.T) {
	l := newConnLimiter(5, 1, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")})
	backend, other := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("192.0.2.1")
	for i := 0; i < 4; i++ {
		if r := l.acquire(backend); r != "" {
			t.Fatalf("exempt connection %d refused: %q", i+1, r)
		}
	}
	if r := l.acquire(other); r != "" {
		t.Fatalf("first from another address: %q", r)
	}
	if r := l.acquire(backend); r != reasonMaxConnections {
		t.Fatalf("sixth in total from an exempt address: %q, want the total limit", r)
	}
	l.release(backend)
	if r := l.acquire(other); r != reasonPerIPConnections {
		t.Fatalf("second from a non-exempt address: %q, want per-IP refusal", r)
	}
}
