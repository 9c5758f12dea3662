package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

// testMessage is a message a test sent, as it went out (before dot-stuffing).
type testMessage struct {
	msgID string // Message-ID header value, with the angle brackets
	from  string
	rcpts []string
	data  []byte
}

// makeMessage builds a unique message: headers with the Message-ID, and a
// body of varied length that exercises transparency (lines starting with
// a dot, a line holding only a dot), 8-bit text and long lines.
func makeMessage(tag string, n int, rng *rand.Rand) testMessage {
	id := fmt.Sprintf("<%s-%d-%016x@client.e2e.test>", tag, n, rng.Uint64())
	from := fmt.Sprintf("sender-%d@example.org", n)
	rcpt := fmt.Sprintf("user%d@e2e.test", n%7)
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Sender %d <%s>\r\n", n, from)
	fmt.Fprintf(&b, "To: <%s>\r\n", rcpt)
	fmt.Fprintf(&b, "Subject: %s message %d\r\n", tag, n)
	fmt.Fprintf(&b, "Message-ID: %s\r\n", id)
	fmt.Fprintf(&b, "Date: Mon, 2 Jun 2025 10:00:00 +0000\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	lines := 5 + rng.IntN(60)
	for i := 0; i < lines; i++ {
		switch rng.IntN(12) {
		case 0:
			b.WriteString(".\r\n")
		case 1:
			fmt.Fprintf(&b, ".leading dot %d of %s\r\n", i, id)
		case 2:
			b.WriteString("Grüße aus Köln — 8-bit text ✓\r\n")
		case 3:
			b.WriteString("\r\n")
		case 4:
			b.WriteString(strings.Repeat("long-line ", 90) + "\r\n")
		default:
			fmt.Fprintf(&b, "line %d of message %d: %x\r\n", i, n, rng.Uint64())
		}
	}
	fmt.Fprintf(&b, "-- \r\nend of %s\r\n", id)
	return testMessage{msgID: id, from: from, rcpts: []string{rcpt}, data: b.Bytes()}
}

var receivedIDRe = regexp.MustCompile(`\bwith ESMTPS? id ([^\s;]+)`)

// sentRecord is a message a client got an answer for.
type sentRecord struct {
	msg     testMessage
	queueID string
}

// loadResult is what a load run saw.
type loadResult struct {
	mu       sync.Mutex
	acked    map[string]sentRecord // by Message-ID
	badReply []string
	errs     []string
}

func (r *loadResult) addErr(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) < 20 {
		r.errs = append(r.errs, fmt.Sprintf(format, args...))
	}
}

// runLoad sends messages over conns connections. Each connection sends
// perConn messages (0: until stop is closed) and stops at its first error.
// acked counts the 250 replies as they come.
func runLoad(addr, tag string, conns, perConn int, stop <-chan struct{}, acked *atomic.Int64) *loadResult {
	res := &loadResult{acked: map[string]sentRecord{}}
	var wg sync.WaitGroup
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 0x6d7867617465))
			cl, err := dialSMTP(addr)
			if err != nil {
				res.addErr("conn %d: dial: %v", c, err)
				return
			}
			defer cl.close()
			if _, err := cl.hello(); err != nil {
				res.addErr("conn %d: %v", c, err)
				return
			}
			for i := 0; perConn == 0 || i < perConn; i++ {
				if stop != nil {
					select {
					case <-stop:
						return
					default:
					}
				}
				m := makeMessage(tag, c*1_000_000+i, rng)
				rep, err := cl.sendMessage(m.from, m.rcpts, m.data)
				if err != nil {
					res.addErr("conn %d message %d: %v", c, i, err)
					return
				}
				id, ok := queueIDOf(rep)
				if !ok {
					res.mu.Lock()
					res.badReply = append(res.badReply, fmt.Sprintf("%s: %q", m.msgID, rep))
					res.mu.Unlock()
					continue
				}
				res.mu.Lock()
				res.acked[m.msgID] = sentRecord{msg: m, queueID: id}
				res.mu.Unlock()
				acked.Add(1)
			}
			if _, err := cl.cmd("QUIT"); err != nil {
				res.addErr("conn %d: QUIT: %v", c, err)
			}
		}()
	}
	wg.Wait()
	return res
}

// TestDeliverExactlyOnce: 2,000 messages over 20 concurrent connections are
// each acknowledged with a unique queue id and delivered exactly once,
// byte-identical apart from the Received header mxgate adds first.
func TestDeliverExactlyOnce(t *testing.T) {
	const conns, perConn = 20, 100
	const total = conns * perConn
	b1, b2 := smtptest.Start(t), smtptest.Start(t)
	n := startNode(t, nodeOptions{backends: []string{b1.Addr(), b2.Addr()}})

	start := time.Now()
	var acked atomic.Int64
	res := runLoad(n.inbound, "once", conns, perConn, nil, &acked)
	sendTook := time.Since(start)
	if len(res.errs) > 0 {
		t.Fatalf("e2e: client errors:\n%s", strings.Join(res.errs, "\n"))
	}
	if len(res.badReply) > 0 {
		t.Fatalf("e2e: %d replies to DATA were not \"250 2.0.0 Ok: queued as <id>\", e.g.:\n%s",
			len(res.badReply), strings.Join(res.badReply[:min(10, len(res.badReply))], "\n"))
	}
	if len(res.acked) != total {
		t.Fatalf("e2e: %d messages acknowledged, want %d", len(res.acked), total)
	}
	ids := map[string]string{}
	for mid, s := range res.acked {
		if other, dup := ids[s.queueID]; dup {
			t.Fatalf("e2e: queue id %s given to both %s and %s", s.queueID, other, mid)
		}
		ids[s.queueID] = mid
	}

	wait.For(t, 2*time.Minute, fmt.Sprintf("%d deliveries", total), func() (bool, string) {
		got := b1.Count() + b2.Count()
		return got >= total, fmt.Sprintf("%d delivered", got)
	})
	n.waitMetric(30*time.Second, 0, "mxgate_queue_messages")
	took := time.Since(start)

	seen := map[string]int{}
	var problems []string
	fail := func(format string, args ...any) {
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	all := append(b1.Deliveries(), b2.Deliveries()...)
	for _, d := range all {
		recv, rest, ok := splitReceived(d.Data)
		if !ok {
			fail("a delivered message does not start with a Received header: %.200q", d.Data)
			continue
		}
		mid := smtptest.HeaderValue(rest, "Message-ID")
		seen[mid]++
		s, ok := res.acked[mid]
		if !ok {
			fail("delivered message %s was never sent", mid)
			continue
		}
		if !bytes.Equal(rest, s.msg.data) {
			fail("%s: delivered bytes after the Received header differ from what was sent (%d vs %d bytes)", mid, len(rest), len(s.msg.data))
		}
		if d.From != s.msg.from || strings.Join(d.Rcpts, ",") != strings.Join(s.msg.rcpts, ",") {
			fail("%s: envelope %s -> %v, sent %s -> %v", mid, d.From, d.Rcpts, s.msg.from, s.msg.rcpts)
		}
		if m := receivedIDRe.FindSubmatch(recv); m == nil || string(m[1]) != s.queueID {
			fail("%s: Received header does not carry the queue id %s: %q", mid, s.queueID, recv)
		}
	}
	for mid := range res.acked {
		if c := seen[mid]; c != 1 {
			fail("%s delivered %d times, want exactly once", mid, c)
		}
	}
	if len(problems) > 0 {
		t.Fatalf("e2e: %d deliveries checked, problems:\n%s", len(all), strings.Join(problems, "\n"))
	}
	t.Logf("e2e: exactly once: %d messages acknowledged in %v, all delivered once in %v (%d to %s, %d to %s)",
		total, sendTook.Round(time.Millisecond), took.Round(time.Millisecond), b1.Count(), b1.Addr(), b2.Count(), b2.Addr())
}

// TestKill9DuringLoad: kill -9 of the node while 20 connections send; after
// a restart on the same data dir and ports, every message that got a 250 is
// delivered. Duplicates are allowed and counted; a loss fails the test.
func TestKill9DuringLoad(t *testing.T) {
	const conns, killAfter = 20, 1500
	be := smtptest.Start(t)
	n := startNode(t, nodeOptions{backends: []string{be.Addr()}})

	var acked atomic.Int64
	done := make(chan *loadResult, 1)
	go func() { done <- runLoad(n.inbound, "kill9", conns, 0, nil, &acked) }()

	wait.For(t, 2*time.Minute, fmt.Sprintf("%d acknowledged messages", killAfter), func() (bool, string) {
		select {
		case res := <-done:
			done <- res
			return true, "load stopped early"
		default:
		}
		a := acked.Load()
		return a >= killAfter, fmt.Sprintf("%d acknowledged", a)
	})
	n.kill9()
	var res *loadResult
	select {
	case res = <-done:
	case <-time.After(time.Minute):
		t.Fatal("e2e: senders did not stop within a minute of kill -9")
	}
	if len(res.badReply) > 0 {
		t.Fatalf("e2e: replies to DATA that were not \"250 2.0.0 Ok: queued as <id>\" before the kill:\n%s",
			strings.Join(res.badReply[:min(10, len(res.badReply))], "\n"))
	}
	if len(res.acked) < killAfter {
		t.Fatalf("e2e: load stopped after %d acknowledged messages, before the kill: %s", len(res.acked), strings.Join(res.errs, "; "))
	}
	deliveredBeforeRestart := be.Count()

	n.start()
	lost := func() []string {
		got := be.ByMessageID()
		var l []string
		for mid := range res.acked {
			if got[mid] == 0 {
				l = append(l, mid)
			}
		}
		return l
	}
	err := wait.Until(2*time.Minute, func() (bool, string) {
		l := lost()
		return len(l) == 0, fmt.Sprintf("%d acknowledged messages not delivered", len(l))
	})
	got := be.ByMessageID()
	delivered, dups, extra := 0, 0, 0
	for mid, c := range got {
		if _, ok := res.acked[mid]; ok {
			delivered++
		} else {
			extra++ // sent, cut off before its reply, yet committed: allowed
		}
		dups += c - 1
	}
	l := lost()
	t.Logf("e2e: kill -9: %d acknowledged, %d delivered, %d duplicates, %d lost (%d delivered before the kill, %d unacknowledged also delivered)",
		len(res.acked), delivered, dups, len(l), deliveredBeforeRestart, extra)
	if err != nil {
		if len(l) > 10 {
			l = l[:10]
		}
		t.Fatalf("e2e: messages acknowledged with 250 were lost after kill -9 and restart: %v; e.g. %s", err, strings.Join(l, " "))
	}
	for _, d := range be.Deliveries() {
		_, rest, ok := splitReceived(d.Data)
		mid := smtptest.HeaderValue(rest, "Message-ID")
		if s, sent := res.acked[mid]; sent && (!ok || !bytes.Equal(rest, s.msg.data)) {
			t.Errorf("e2e: %s: delivered bytes differ from what was sent", mid)
		}
	}
	n.waitMetric(time.Minute, 0, "mxgate_queue_messages")
}
