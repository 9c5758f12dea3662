package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/filter/bayes"
	"github.com/mxgate/mxgate/gateway"
	"github.com/mxgate/mxgate/quarantine"
)

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "500MB": 500e6, "10GiB": 10 << 30, "2 TiB": 2 << 40} {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("%q: %d %v, want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "10XB", "-1", "1.5GB", "99999999999TiB"} {
		if _, err := parseByteSize(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestQuarantineSectionChecks(t *testing.T) {
	var s QuarantineSection
	s.setDefaults()
	if errs := s.validate(failedKeys{}); len(errs) != 0 {
		t.Fatalf("defaults: %v", errs)
	}
	s.OnFull, s.MaxBytes, s.Lifetime, s.RejectedLifetime = "bounce", 1000, Duration(time.Minute), Duration(31*oneDay)
	var keys []string
	for _, e := range s.validate(failedKeys{}) {
		keys = append(keys, e.Key)
	}
	if got := strings.Join(keys, ","); got != "quarantine.lifetime,quarantine.rejected_lifetime,quarantine.max_bytes,quarantine.on_full" {
		t.Errorf("problems with %s", got)
	}
}

// The keeper stores the message as it would have been delivered, with
// the lifetime of its kind, and turns a full quarantine into a refusal
// only with on_full: reject.
func TestQuarantineKeeper(t *testing.T) {
	dir := t.TempDir()
	store, err := quarantine.OpenLocal(filepath.Join(dir, "q.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	spooled := filepath.Join(dir, "msg")
	if err := os.WriteFile(spooled, []byte("Subject: x\r\n\r\nbody\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var sec QuarantineSection
	sec.setDefaults()
	k := &quarantineKeeper{store: store, node: "mx1", sec: sec}
	if !k.Keeps(gateway.KindSpam) || k.Keeps(gateway.KindVirus) || !k.Keeps(gateway.KindRejected) {
		t.Error("default kinds: spam and rejected copies, not viruses")
	}
	now := time.Now()
	m := &gateway.QuarantinedMessage{ID: "abc123", Kind: gateway.KindRejected, Received: now, From: "a@b.example",
		Rcpts: []string{"u@e.example"}, Header: []byte("Received: by mx1\r\n"), Path: spooled}
	ctx := context.Background()
	if err := k.Keep(ctx, m); err != nil {
		t.Fatal(err)
	}
	e, _ := store.Get(ctx, "abc123")
	if e.Reason != quarantine.ReasonRejected || !e.ExpiresAt.Equal(now.Add(oneDay)) || e.Node != "mx1" {
		t.Errorf("kept %+v", e)
	}
	rc, _ := store.Body(ctx, "abc123")
	var b bytes.Buffer
	_, _ = b.ReadFrom(rc)
	if b.String() != "Received: by mx1\r\nSubject: x\r\n\r\nbody\r\n" {
		t.Errorf("body %q", b.String())
	}

	full, err := quarantine.OpenLocal(filepath.Join(dir, "full.db"), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	m.ID = "def456"
	k.store = full
	if err := k.Keep(ctx, m); !errors.Is(err, quarantine.ErrFull) || errors.Is(err, gateway.ErrQuarantineRefuse) {
		t.Errorf("full, tempfail: %v", err)
	}
	k.sec.OnFull = quarantineOnFullReject
	if err := k.Keep(ctx, m); !errors.Is(err, gateway.ErrQuarantineRefuse) {
		t.Errorf("full, reject: %v", err)
	}
}

// The API's answers: 404 for an unknown id, 409 for a second release,
// the raw message as a download that is never rendered.
func TestQuarantineAPI(t *testing.T) {
	dir := t.TempDir()
	store, err := quarantine.OpenLocal(filepath.Join(dir, "q.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	e := quarantine.Entry{ID: "q1", Time: time.Now(), Node: "mx1", Sender: "a@b.example", Recipients: []string{"u@e.example"},
		Reason: quarantine.ReasonSpam, ExpiresAt: time.Now().Add(time.Hour)}
	msg := "Subject: <b>hi</b>\r\nContent-Type: text/html\r\n\r\n<script>x()</script><p>visible</p>\r\n"
	if _, err := store.Put(context.Background(), e, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	sp := &recordingSpooler{}
	q := &nodeQuarantine{store: store, releaser: &quarantine.Releaser{Store: store, Node: "mx1", Spool: sp}}
	mux := gateway.NewAdminMux("", nil)
	registerQuarantineAPI(mux, q, nil, discardLogger())
	do := func(method, path, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.RemoteAddr = "127.0.0.1:1234"
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	if w := do("GET", "/api/v1/quarantine/nope", ""); w.Code != http.StatusNotFound {
		t.Errorf("unknown id: %d", w.Code)
	}
	if w := do("GET", "/api/v1/quarantine?reason=ham", ""); w.Code != http.StatusBadRequest {
		t.Errorf("bad reason: %d", w.Code)
	}
	w := do("GET", "/api/v1/quarantine/q1", "")
	var show quarantineShow
	if err := json.Unmarshal(w.Body.Bytes(), &show); err != nil || show.Preview == nil ||
		strings.Contains(show.Preview.Text, "script") || !strings.Contains(show.Preview.Text, "visible") {
		t.Errorf("show: %d %s", w.Code, w.Body)
	}
	w = do("GET", "/api/v1/quarantine/q1/raw", "")
	if w.Code != 200 || w.Body.String() != msg || w.Header().Get("Content-Type") != "application/octet-stream" ||
		w.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("raw: %d %v %q", w.Code, w.Header(), w.Body)
	}
	if w := do("POST", "/api/v1/quarantine/q1/release", `{"by":"alice"}`); w.Code != 200 || sp.n != 1 {
		t.Errorf("release: %d %s, %d spooled", w.Code, w.Body, sp.n)
	}
	if w := do("POST", "/api/v1/quarantine/q1/release", ""); w.Code != http.StatusConflict || sp.n != 1 {
		t.Errorf("second release: %d %s, %d spooled", w.Code, w.Body, sp.n)
	}
	if w := do("DELETE", "/api/v1/quarantine/q1", ""); w.Code != http.StatusConflict {
		t.Errorf("delete of a released entry: %d", w.Code)
	}
	r := httptest.NewRequest("GET", "/api/v1/quarantine", nil)
	r.RemoteAddr = "192.0.2.1:1234"
	rw := httptest.NewRecorder()
	mux.ServeHTTP(rw, r)
	if rw.Code != http.StatusForbidden {
		t.Errorf("from outside without a token: %d", rw.Code)
	}
}

type recordingSpooler struct{ n int }

func (s *recordingSpooler) Spool(context.Context, quarantine.Spooled) (string, error) {
	s.n++
	return "queued1", nil
}

// Report as spam or ham: 409 with Bayes off; with it, one learn of the
// right class, then spam is deleted and ham released, once; a second
// report takes nothing in.
func TestQuarantineReportAs(t *testing.T) {
	dir := t.TempDir()
	store, err := quarantine.OpenLocal(filepath.Join(dir, "q.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	for _, id := range []string{"s1", "h1"} {
		e := quarantine.Entry{ID: id, Time: time.Now(), Node: "mx1", Sender: "a@b.example", Recipients: []string{"u@e.example"},
			Reason: quarantine.ReasonSpam, ExpiresAt: time.Now().Add(time.Hour)}
		if _, err := store.Put(ctx, e, strings.NewReader("Subject: cheap pills "+id+"\r\n\r\nbuy cheap pills now\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	sp := &recordingSpooler{}
	q := &nodeQuarantine{store: store, releaser: &quarantine.Releaser{Store: store, Node: "mx1", Spool: sp}}
	mux := gateway.NewAdminMux("", nil)
	registerQuarantineAPI(mux, q, nil, discardLogger())
	do := func(path string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", path, strings.NewReader(`{"by":"alice"}`))
		r.RemoteAddr = "127.0.0.1:1234"
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	if w := do("/api/v1/quarantine/s1/report?as=spam"); w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "bayes is off") {
		t.Errorf("bayes off: %d %s", w.Code, w.Body)
	}
	bs, err := bayes.OpenBolt(filepath.Join(dir, "bayes.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	q.bayes = &bayes.Check{Store: bs, Features: bayes.DefaultFeatures}
	learned := func() (int64, int64) {
		h, s, err := bs.Learned(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return h, s
	}
	if w := do("/api/v1/quarantine/s1/report?as=maybe"); w.Code != http.StatusBadRequest {
		t.Errorf("as=maybe: %d", w.Code)
	}
	if w := do("/api/v1/quarantine/s1/report?as=spam"); w.Code != 200 {
		t.Fatalf("spam: %d %s", w.Code, w.Body)
	}
	if h, s := learned(); h != 0 || s != 1 {
		t.Errorf("after spam: %d ham, %d spam learnt", h, s)
	}
	if e, _ := store.Get(ctx, "s1"); e.State != quarantine.StateDeleted || e.By != "alice" || sp.n != 0 {
		t.Errorf("spam: %+v, %d spooled", e, sp.n)
	}
	if w := do("/api/v1/quarantine/s1/report?as=spam"); w.Code != http.StatusConflict {
		t.Errorf("second spam report: %d", w.Code)
	}
	if w := do("/api/v1/quarantine/h1/report?as=ham"); w.Code != 200 || sp.n != 1 {
		t.Fatalf("ham: %d %s, %d spooled", w.Code, w.Body, sp.n)
	}
	if h, s := learned(); h != 1 || s != 1 {
		t.Errorf("after ham: %d ham, %d spam learnt", h, s)
	}
	if e, _ := store.Get(ctx, "h1"); e.State != quarantine.StateReleased {
		t.Errorf("ham: %+v", e)
	}
	for _, as := range []string{"ham", "spam"} {
		if w := do("/api/v1/quarantine/h1/report?as=" + as); w.Code != http.StatusConflict || sp.n != 1 {
			t.Errorf("%s report of a released entry: %d, %d spooled", as, w.Code, sp.n)
		}
	}
	if h, s := learned(); h != 1 || s != 1 {
		t.Errorf("after the refused reports: %d ham, %d spam learnt", h, s)
	}
}
