package quarantine_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/quarantine"
	"github.com/mxgate/mxgate/quarantine/quarantinetest"
	"github.com/mxgate/mxgate/smarthost"
)

func openLocal(t *testing.T, maxBytes int64) quarantine.Store {
	s, err := quarantine.OpenLocal(filepath.Join(t.TempDir(), "quarantine.db"), maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestLocalStore(t *testing.T) {
	quarantinetest.Run(t, openLocal)
}

// The standalone store keeps its entries across a restart.
func TestLocalStoreReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "quarantine.db")
	s, err := quarantine.OpenLocal(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	msg := quarantinetest.Message("p1", 1000)
	quarantinetest.Put(t, s, quarantinetest.Entry("p1", 0), msg)
	s.Close()
	s, err = quarantine.OpenLocal(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if b := quarantinetest.ReadBody(t, s, "p1"); !bytes.Equal(b, msg) {
		t.Fatal("body changed across a reopen")
	}
}

// A released message goes into a real spool, durably, with the release
// header before the stored message.
func TestQueueSpooler(t *testing.T) {
	q, err := smarthost.Open(smarthost.Config{Dir: filepath.Join(t.TempDir(), "spool"), Hostname: "mx1.test",
		LocalDomains: []string{"example.com"}, Backends: []string{"127.0.0.1:1"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	s := openLocal(t, 0)
	msg := quarantinetest.Message("s1", 2000)
	quarantinetest.Put(t, s, quarantinetest.Entry("s1", 0), msg)
	r := &quarantine.Releaser{Store: s, Node: "mx1", Spool: quarantine.QueueSpooler{Queue: q}}
	e, err := r.Release(context.Background(), "s1", "alice\r\nBcc: evil@x")
	if err != nil {
		t.Fatal(err)
	}
	list := q.List()
	if len(list) != 1 || list[0].ID != e.QueueID || list[0].From != "spammer@bad.example" ||
		len(list[0].Recipients) != 1 || list[0].Recipients[0].Addr != "user@example.com" {
		t.Fatalf("queue after release: %+v (entry %+v)", list, e)
	}
	if e.By != "aliceBcc: evil@x" {
		t.Errorf("by %q: line breaks must go", e.By)
	}
}

func TestReleasedHeader(t *testing.T) {
	h := string(quarantine.ReleasedHeader("bob\n", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
	if h != "X-Quarantine-Released: by bob at Fri, 02 Jan 2026 03:04:05 +0000\r\n" {
		t.Errorf("header %q", h)
	}
}

// A Put applied twice (a retried cluster write) succeeds twice; a claim
// applied twice with the same token too.
func TestWritesIdempotent(t *testing.T) {
	s := openLocal(t, 0)
	e := quarantinetest.Entry("i1", 0)
	msg := quarantinetest.Message("i1", 100)
	first := quarantinetest.Put(t, s, e, msg)
	if again := quarantinetest.Put(t, s, e, msg); again.Stored != first.Stored {
		t.Errorf("second put: %+v", again)
	}
	ctx := context.Background()
	req := quarantine.ClaimRequest{ID: "i1", Node: "mx1", At: quarantinetest.T0, Token: "abc"}
	if _, err := s.Claim(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, req); err != nil {
		t.Errorf("the same claim again: %v", err)
	}
	req.Token = "other"
	if _, err := s.Claim(ctx, req); !errors.Is(err, quarantine.ErrClaimed) {
		t.Errorf("another claim by the same node: %v, want ErrClaimed", err)
	}
}

func TestCompressBounds(t *testing.T) {
	z, n, err := quarantine.Compress(strings.NewReader(strings.Repeat("spam ", 100000)))
	if err != nil || n != 500000 || len(z) > 10000 {
		t.Fatalf("compress: %d bytes from %d, %v", len(z), n, err)
	}
	rc, err := quarantine.Decompress(z)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	if len(b) != 500000 {
		t.Errorf("decompressed %d bytes", len(b))
	}
	if _, err := quarantine.Decompress([]byte("not zstd")); err == nil {
		rc, _ := quarantine.Decompress([]byte("not zstd"))
		if _, err := io.ReadAll(rc); err == nil {
			t.Error("garbage decompressed without an error")
		}
	}
}

func TestPreviewIsPlainText(t *testing.T) {
	msg := "From: =?utf-8?q?Evil?= <e@x.example>\r\nSubject: <script>alert(1)</script>\r\n" +
		"Content-Type: text/html\r\n\r\n<html><head><script>steal()</script><style>p{}</style></head>" +
		"<body><p>Hello <b>there</b></p><img src=\"http://track.example/p.gif\"></body></html>\r\n"
	p := quarantine.MakePreview(strings.NewReader(msg))
	if !p.TextFromHTML || !strings.Contains(p.Text, "Hello") || !strings.Contains(p.Text, "there") {
		t.Fatalf("text %q from html %v", p.Text, p.TextFromHTML)
	}
	for _, bad := range []string{"<", "steal", "track.example"} {
		if strings.Contains(p.Text, bad) {
			t.Errorf("preview text %q holds %q", p.Text, bad)
		}
	}
	if p.Subject != "<script>alert(1)</script>" {
		t.Errorf("subject %q: kept as text (escaping is the renderer's job)", p.Subject)
	}
	plain := "Subject: hi\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nplain\x07 text\r\n--b--\r\n"
	if p := quarantine.MakePreview(strings.NewReader(plain)); p.TextFromHTML || !strings.HasPrefix(p.Text, "plain text") {
		t.Errorf("multipart: text %q from html %v, want the plain part without control bytes", p.Text, p.TextFromHTML)
	}
}
