package rspamd

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/filter"
)

func body(t *testing.T) *filter.Body {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m")
	if err := os.WriteFile(path, []byte("Subject: hi\r\n\r\nhello\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := filter.OpenMessage("Q1", path)
	if err != nil {
		t.Fatal(err)
	}
	return &filter.Body{Conn: &filter.Conn{ID: "s", IP: netip.MustParseAddr("192.0.2.7"), Helo: "client.example"},
		From: "a@example.org", Rcpts: []string{"u@example.com", "v@example.com"}, Msg: m}
}

func TestCheckScores(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/checkv2" || r.Method != http.MethodPost || string(got) != "Subject: hi\r\n\r\nhello\r\n" ||
			r.Header.Get("IP") != "192.0.2.7" || r.Header.Get("From") != "a@example.org" || len(r.Header.Values("Rcpt")) != 2 ||
			r.Header.Get("Queue-Id") != "Q1" || r.Header.Get("Helo") != "client.example" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		io.WriteString(w, `{"score": 6.5, "action": "add header", "symbols": {"R_SPF_FAIL": {"name": "R_SPF_FAIL", "score": 1.5}, "BAYES_SPAM": {"name": "BAYES_SPAM", "score": 5}}}`)
	}))
	defer srv.Close()
	c, err := New(Config{URL: srv.URL, Weight: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	r := c.CheckBody(context.Background(), body(t))
	if r.Err != nil || len(r.Symbols) != 1 || r.Symbols[0].Name != Symbol || r.Symbols[0].Score != 3.25 {
		t.Fatalf("result %+v", r)
	}
	if r.Symbols[0].Detail != "BAYES_SPAM=5 R_SPF_FAIL=1.5" {
		t.Errorf("detail %q", r.Symbols[0].Detail)
	}
}

// A failing rspamd is an error, never a verdict: not reachable, an HTTP
// error, garbage, an error reply, too slow.
func TestCheckErrors(t *testing.T) {
	for name, h := range map[string]http.HandlerFunc{
		"status":  func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) },
		"garbage": func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "not json") },
		"error":   func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"error": "cannot parse"}`) },
		"slow": func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(time.Second):
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			defer srv.Close()
			c, _ := New(Config{URL: srv.URL, Timeout: 200 * time.Millisecond})
			if r := c.CheckBody(context.Background(), body(t)); r.Err == nil || len(r.Symbols) != 0 {
				t.Errorf("%+v: want an error and no symbol", r)
			}
		})
	}
	c, _ := New(Config{URL: "http://127.0.0.1:1"})
	if r := c.CheckBody(context.Background(), body(t)); r.Err == nil {
		t.Error("unreachable rspamd: no error")
	}
	if _, err := New(Config{URL: "ftp://x"}); err == nil || !strings.Contains(err.Error(), "want http") {
		t.Errorf("bad url: %v", err)
	}
}
