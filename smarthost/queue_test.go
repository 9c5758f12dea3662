package smarthost

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/logtest"
	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

func TestCommitThenReopenRecovers(t *testing.T) {
	cfg := testConfig(t)
	q := openQueue(t, cfg)
	var ids []string
	for i := range 3 {
		ids = append(ids, submit(t, q, "alice@sender.test", []string{fmt.Sprintf("u%d@example.com", i)}, "s"))
	}
	// A draft never committed: the process "dies" while receiving it.
	d, err := q.NewDraft()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Write([]byte("Subject: partial\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = d.Flush()
	// Leftovers of crashes before Commit returned.
	mustWrite(t, filepath.Join(cfg.Dir, msgDirName, newID(time.Now())), "body without envelope")
	// A torn trailer: the magic is there, the checksum does not match.
	torn := append([]byte("Subject: x\r\n\r\nbody\r\n{\"from\":\"x\"}"), trailerMagic...)
	torn = append(torn, 0, 0, 0, 12, 1, 2, 3, 4)
	mustWrite(t, filepath.Join(cfg.Dir, msgDirName, newID(time.Now().Add(3*time.Second))), string(torn))
	orphanEnv := newID(time.Now().Add(time.Second))
	mustWrite(t, filepath.Join(cfg.Dir, envDirName, orphanEnv), `{"from":"x","rcpts":["a@example.com"]}`)
	badEnv := newID(time.Now().Add(2 * time.Second))
	mustWrite(t, filepath.Join(cfg.Dir, envDirName, badEnv), `{"from":`)
	mustWrite(t, filepath.Join(cfg.Dir, msgDirName, badEnv), "body")
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q2 := openQueue(t, cfg)
	if got := q2.Len(); got != 3 {
		t.Fatalf("Len after reopen = %d, want 3: %+v", got, q2.List())
	}
	list := q2.List()
	for i, id := range ids {
		if list[i].ID != id || list[i].Recipients[0].Status != RcptPending || list[i].From != "alice@sender.test" {
			t.Errorf("message %d = %+v, want id %s pending", i, list[i], id)
		}
	}
	if q2.Oldest().IsZero() {
		t.Error("Oldest is zero with messages queued")
	}
	for _, dir := range []string{tmpDirName, msgDirName, envDirName} {
		entries, err := os.ReadDir(filepath.Join(cfg.Dir, dir))
		if err != nil {
			t.Fatal(err)
		}
		want := 3 // committed messages, each one file with its envelope
		if dir != msgDirName {
			want = 0 // no drafts, no delivery state without a message
		}
		if len(entries) != want {
			t.Errorf("%s holds %d files after recovery, want %d", dir, len(entries), want)
		}
	}
}

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDraftAbort(t *testing.T) {
	cfg := testConfig(t)
	q := openQueue(t, cfg)
	d, err := q.NewDraft()
	if err != nil {
		t.Fatal(err)
	}
	if len(d.ID()) != 20 || !validID(d.ID()) {
		t.Fatalf("bad id %q", d.ID())
	}
	if _, err := d.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	path := d.Path()
	d.Abort()
	d.Abort()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("draft file still there after Abort: %v", err)
	}
	if err := q.Commit(d, Envelope{Rcpts: []string{"a@example.com"}}); err == nil {
		t.Fatal("Commit after Abort succeeded")
	}

	d2, err := q.NewDraft()
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Commit(d2, Envelope{From: "a@b.test"}); err == nil {
		t.Fatal("Commit without recipients succeeded")
	}
	if q.Len() != 0 {
		t.Fatalf("Len = %d after failed commits", q.Len())
	}
	d3, _ := q.NewDraft()
	if err := q.Commit(d3, Envelope{Rcpts: []string{"a@example.com"}}); err != nil {
		t.Fatal(err)
	}
	d3.Abort() // no-op after Commit
	if _, err := os.Stat(filepath.Join(cfg.Dir, msgDirName, d3.ID())); err != nil {
		t.Fatalf("Abort after Commit removed the message: %v", err)
	}
}

func TestConcurrentCommits(t *testing.T) {
	cfg := testConfig(t)
	q := openQueue(t, cfg)
	const workers, each = 20, 25
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), 64)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				d, err := q.NewDraft()
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := d.Write(body); err != nil {
					t.Error(err)
					return
				}
				if err := q.Commit(d, Envelope{From: "a@b.test", Rcpts: []string{"x@example.com"}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	_ = q.Close()
	q2 := openQueue(t, cfg)
	if got := q2.Len(); got != workers*each {
		t.Fatalf("recovered %d messages, want %d", got, workers*each)
	}
	for _, m := range q2.List()[:3] {
		if m.Size != int64(len(body)) {
			t.Fatalf("size %d, want %d", m.Size, len(body))
		}
	}
}

func TestRoundRobinAcrossBackends(t *testing.T) {
	a, b := smtptest.Start(t), smtptest.Start(t)
	q := openQueue(t, testConfig(t, a, b))
	runQueue(t, q)
	const n = 20
	for i := range n {
		submit(t, q, "alice@sender.test", []string{fmt.Sprintf("u%d@example.com", i)}, "rr")
	}
	wait.For(t, waitTimeout, "all delivered", func() bool { return a.Count()+b.Count() == n && q.Len() == 0 })
	if a.Count() < n/4 || b.Count() < n/4 {
		t.Fatalf("unbalanced: %d / %d", a.Count(), b.Count())
	}
}

func TestBackendDownFailsOver(t *testing.T) {
	a, b := smtptest.Start(t), smtptest.Start(t)
	a.SetDown(true)
	q := openQueue(t, testConfig(t, a, b))
	runQueue(t, q)
	const n = 10
	for i := range n {
		submit(t, q, "alice@sender.test", []string{fmt.Sprintf("u%d@example.com", i)}, "failover")
	}
	wait.For(t, waitTimeout, "all delivered to b", func() bool { return b.Count() == n && q.Len() == 0 })
	if a.Count() != 0 {
		t.Fatalf("down backend got %d messages", a.Count())
	}
}

func TestBackendUpRetriesWithoutWaiting(t *testing.T) {
	a := smtptest.Start(t)
	a.SetDown(true)
	cfg := testConfig(t, a)
	cfg.RetryMin = time.Hour // only the health checker can make this quick
	q := openQueue(t, cfg)
	runQueue(t, q)
	id := submit(t, q, "alice@sender.test", []string{"bob@example.com"}, "wait")
	wait.For(t, waitTimeout, "first attempt deferred", func() bool {
		l := q.List()
		return len(l) == 1 && l[0].Attempts >= 1 && !l[0].InFlight
	})
	if a.Count() != 0 {
		t.Fatal("delivered while down")
	}
	a.SetDown(false)
	wait.For(t, waitTimeout, "delivered after backend came up", func() bool { return a.Count() == 1 && q.Len() == 0 })
	if m := a.Deliveries()[0]; !bytes.Contains(m.Data, []byte(id)) {
		t.Fatalf("delivered message lacks its Received header: %q", m.Data)
	}
}

func TestPermanentFailureBouncesOneRecipient(t *testing.T) {
	backend, senderMX := smtptest.Start(t), smtptest.Start(t)
	backend.OnRcpt(func(to string) error {
		if to == "bad@example.com" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	})
	cfg := testConfig(t, backend)
	cfg.Transports = map[string]string{"Sender.Test": "[127.0.0.1]:" + port(senderMX.Addr())}
	logs := &logtest.Buffer{}
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	q := openQueue(t, cfg)
	runQueue(t, q)

	id := submit(t, q, "alice@sender.test", []string{"good@example.com", "bad@example.com"}, "hello there")
	wait.For(t, waitTimeout, "DSN delivered and queue empty", func() bool { return senderMX.Count() == 1 && q.Len() == 0 })

	if backend.RcptCount("good@example.com") != 1 || backend.RcptCount("bad@example.com") != 0 {
		t.Fatalf("backend got %+v", backend.Deliveries())
	}
	dsn := senderMX.Deliveries()[0]
	if dsn.From != "" || len(dsn.Rcpts) != 1 || dsn.Rcpts[0] != "alice@sender.test" {
		t.Fatalf("DSN envelope from=%q rcpts=%v", dsn.From, dsn.Rcpts)
	}
	report := parseDSN(t, dsn.Data)
	for _, want := range []string{
		"Reporting-MTA: dns; mx1.test",
		"Final-Recipient: rfc822; bad@example.com",
		"Action: failed",
		"Status: 5.1.1",
		"Diagnostic-Code: smtp; 550 5.1.1 no such user",
		"X-Mxgate-Queue-ID: " + id,
	} {
		if !strings.Contains(report.status, want) {
			t.Errorf("delivery-status lacks %q:\n%s", want, report.status)
		}
	}
	if strings.Contains(report.status, "good@example.com") {
		t.Error("DSN reports the delivered recipient")
	}
	if !strings.Contains(report.headers, "Subject: hello there") {
		t.Errorf("returned headers lack the subject:\n%s", report.headers)
	}
	if !strings.Contains(logs.String(), `"msg":"bounce"`) {
		t.Error("no bounce line in the mail log")
	}
}

func port(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	return addr[i+1:]
}

type parsedDSN struct {
	text, status, headers string
}

// parseDSN parses a DSN with go-message's mail reader, as a MUA would.
func parseDSN(t *testing.T, data []byte) parsedDSN {
	t.Helper()
	mr, err := mail.CreateReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("mail.CreateReader: %v\n%s", err, data)
	}
	ct, params, err := mr.Header.ContentType()
	if err != nil || ct != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %q %v %v", ct, params, err)
	}
	if from, err := mr.Header.AddressList("From"); err != nil || len(from) != 1 || from[0].Address != "MAILER-DAEMON@mx1.test" {
		t.Fatalf("From = %v, %v", from, err)
	}
	var out parsedDSN
	var types []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("NextPart: %v", err)
		}
		b, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatal(err)
		}
		pct, _, _ := p.Header.(interface {
			ContentType() (string, map[string]string, error)
		}).ContentType()
		types = append(types, pct)
		switch pct {
		case "text/plain":
			out.text = string(b)
		case "message/delivery-status":
			out.status = string(b)
		case "text/rfc822-headers":
			out.headers = string(b)
		}
	}
	if strings.Join(types, ",") != "text/plain,message/delivery-status,text/rfc822-headers" {
		t.Fatalf("parts %v", types)
	}
	return out
}

func TestLifetimeExpiryBounces(t *testing.T) {
	backend, senderMX := smtptest.Start(t), smtptest.Start(t)
	backend.OnRcpt(func(string) error {
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
	})
	clock := newFakeClock(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	cfg := testConfig(t, backend)
	cfg.Clock = clock.Now
	cfg.Lifetime = 24 * time.Hour
	cfg.Transports = map[string]string{"sender.test": "[127.0.0.1]:" + port(senderMX.Addr())}
	q := openQueue(t, cfg)
	runQueue(t, q)

	submit(t, q, "alice@sender.test", []string{"full@example.com"}, "expiring")
	wait.For(t, waitTimeout, "first attempt", func() bool {
		l := q.List()
		return len(l) == 1 && l[0].Attempts == 1 && !l[0].InFlight
	})
	if senderMX.Count() != 0 {
		t.Fatal("bounced before the lifetime")
	}
	clock.Advance(25 * time.Hour)
	q.Flush()
	wait.For(t, waitTimeout, "expiry DSN", func() bool { return senderMX.Count() == 1 && q.Len() == 0 })
	report := parseDSN(t, senderMX.Deliveries()[0].Data)
	for _, want := range []string{"Status: 4.4.7", "Final-Recipient: rfc822; full@example.com", "mailbox full", "Action: failed"} {
		if !strings.Contains(report.status, want) {
			t.Errorf("delivery-status lacks %q:\n%s", want, report.status)
		}
	}
}

func TestNullSenderNeverBounced(t *testing.T) {
	backend := smtptest.Start(t)
	backend.OnRcpt(func(string) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	})
	cfg := testConfig(t, backend)
	logs := &logtest.Buffer{}
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	q := openQueue(t, cfg)
	runQueue(t, q)
	submit(t, q, "", []string{"bad@example.com"}, "a bounce itself")
	wait.For(t, waitTimeout, "failed and removed", func() bool {
		return q.Len() == 0 && strings.Contains(logs.String(), `"result":"failed"`)
	})
	if strings.Contains(logs.String(), `"msg":"bounce"`) {
		t.Fatalf("a DSN was generated for a null-sender message:\n%s", logs)
	}
}

func TestDeliveredNotRedeliveredAfterReopen(t *testing.T) {
	backend := smtptest.Start(t)
	var mu sync.Mutex
	slowFails := true
	backend.OnRcpt(func(to string) error {
		mu.Lock()
		defer mu.Unlock()
		if to == "slow@example.com" && slowFails {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	})
	cfg := testConfig(t, backend)
	q := openQueue(t, cfg)
	stop := runQueue(t, q)
	submit(t, q, "alice@sender.test", []string{"fast@example.com", "slow@example.com"}, "twice?")
	wait.For(t, waitTimeout, "state saved after first attempt", func() bool {
		l := q.List()
		return len(l) == 1 && l[0].Attempts == 1 && !l[0].InFlight
	})
	stop()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	slowFails = false
	mu.Unlock()
	q2 := openQueue(t, cfg)
	l := q2.List()
	if len(l) != 1 || l[0].Recipients[0].Status != RcptDelivered || l[0].Recipients[1].Status != RcptPending {
		t.Fatalf("recovered state %+v", l)
	}
	runQueue(t, q2)
	q2.Flush()
	wait.For(t, waitTimeout, "slow delivered", func() bool { return backend.RcptCount("slow@example.com") == 1 && q2.Len() == 0 })
	if n := backend.RcptCount("fast@example.com"); n != 1 {
		t.Fatalf("fast@example.com delivered %d times", n)
	}
}

func TestConnectionReuse(t *testing.T) {
	backend := smtptest.Start(t)
	cfg := testConfig(t, backend)
	q := openQueue(t, cfg)
	runQueue(t, q)
	const n = 50
	for i := range n {
		submit(t, q, "alice@sender.test", []string{fmt.Sprintf("u%d@example.com", i)}, "reuse")
	}
	wait.For(t, waitTimeout, "all delivered", func() bool { return backend.Count() == n && q.Len() == 0 })
	if c := int64(backend.Sessions()); c > int64(cfg.Workers)*2 {
		t.Fatalf("%d connections for %d messages with %d workers", c, n, cfg.Workers)
	}
}

func TestReusedConnectionClosedByPeer(t *testing.T) {
	backend := smtptest.Start(t)
	cfg := testConfig(t, backend)
	q := openQueue(t, cfg)
	runQueue(t, q)
	submit(t, q, "alice@sender.test", []string{"a@example.com"}, "one")
	wait.For(t, waitTimeout, "first delivered", func() bool { return backend.Count() == 1 && q.Len() == 0 })
	// Break the pooled connection behind the client's back.
	q.conns.mu.Lock()
	for _, list := range q.conns.idle {
		for _, sc := range list {
			_ = sc.raw.Close()
		}
	}
	q.conns.mu.Unlock()
	submit(t, q, "alice@sender.test", []string{"b@example.com"}, "two")
	wait.For(t, waitTimeout, "second delivered on a fresh connection", func() bool { return backend.Count() == 2 && q.Len() == 0 })
	if l := q.List(); len(l) != 0 {
		t.Fatalf("queue not empty: %+v", l)
	}
}
