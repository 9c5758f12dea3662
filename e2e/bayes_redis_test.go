package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/filter/bayes/redistest"
	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

// Words only the trained ham, or only the trained spam, contains.
var (
	bayesHamWords  = []string{"quarterly", "minutes", "agenda", "reviewed", "budget", "colleagues", "attached", "thanks"}
	bayesSpamWords = []string{"zorblax", "prizewheel", "megadeal", "unclaimed", "jackpotz", "fastcash", "bonanza", "winnerz"}
)

// writeBayesFolder writes count messages made of words into a new
// directory, one message a file (a folder `mxgate bayes train` reads).
func writeBayesFolder(t *testing.T, dir, class string, words []string, count int) string {
	t.Helper()
	path := filepath.Join(dir, class)
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < count; i++ {
		body := strings.Join(append(words[i%3:], words[:i%3]...), " ")
		msg := fmt.Sprintf("From: %s%d@example.org\r\nSubject: %s %s\r\nMessage-ID: <%s%d@train.e2e.test>\r\n\r\n%s\r\n",
			class, i, words[i%len(words)], words[(i+1)%len(words)], class, i, body)
		if err := os.WriteFile(filepath.Join(path, fmt.Sprintf("%d.eml", i)), []byte(msg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// TestBayesRedisKilled: a node whose Bayes store is a real Redis, trained
// with `mxgate bayes train`, scores with Bayes; with Redis killed (SIGKILL)
// mail still flows with BAYES_ERROR scoring 0, the error counted and
// logged; with Redis back on the same port (its append-only file kept the
// counts) Bayes scores again.
func TestBayesRedisKilled(t *testing.T) {
	rs := redistest.Start(t)
	dir := t.TempDir()
	const learns = 6
	ham := writeBayesFolder(t, dir, "ham", bayesHamWords, learns)
	spam := writeBayesFolder(t, dir, "spam", bayesSpamWords, learns)
	out := runCLI(t, "bayes", "train", "-redis", rs.Addr, "--ham", ham, "--spam", spam)
	if !strings.Contains(out, fmt.Sprintf("holds %d ham, %d spam", learns, learns)) {
		t.Fatalf("e2e: bayes train said %q", out)
	}

	be := smtptest.Start(t)
	n := startNode(t, nodeOptions{
		backends: []string{be.Addr()},
		extra:    fmt.Sprintf("redis: {address: %q}\nbayes: {min_learns: 5}\n", rs.Addr),
	})
	seq := 0
	// send sends a message of words and returns its X-Spam-Status.
	send := func(t *testing.T, words []string) string {
		t.Helper()
		seq++
		id := fmt.Sprintf("<bayes%d@client.e2e.test>", seq)
		msg := fmt.Sprintf("From: someone@example.org\r\nTo: user@e2e.test\r\nSubject: %s\r\nMessage-ID: %s\r\n"+
			"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\n\r\n%s\r\n", words[0], id, strings.Join(words, " "))
		c, _ := dialHello(t, n.inbound)
		rep, err := c.sendMessage("someone@example.org", []string{"user@e2e.test"}, []byte(msg))
		if err != nil || !rep.is("250 2.0.0") {
			t.Fatalf("e2e: send: %q, %v", rep, err)
		}
		return strings.Join(headerValues(waitDelivery(t, be, id).Data, "X-Spam-Status"), " ")
	}

	t.Run("Scores", func(t *testing.T) {
		if st := send(t, bayesHamWords); !strings.Contains(st, "BAYES_HAM=") {
			t.Errorf("e2e: ham-like message: X-Spam-Status %q, want BAYES_HAM", st)
		}
		if st := send(t, bayesSpamWords); !strings.Contains(st, "BAYES_SPAM=") {
			t.Errorf("e2e: spam-like message: X-Spam-Status %q, want BAYES_SPAM", st)
		}
		n.waitMetric(10*time.Second, 1, "mxgate_bayes_active")
	})

	t.Run("RedisKilled", func(t *testing.T) {
		before := metricOr0(t, n, "mxgate_bayes_errors_total", "op", "lookup")
		rs.Kill()
		st := send(t, bayesSpamWords)
		if !strings.Contains(st, "BAYES_ERROR=0") || strings.Contains(st, "BAYES_SPAM") {
			t.Errorf("e2e: with Redis down: X-Spam-Status %q, want BAYES_ERROR=0 and no verdict", st)
		}
		if after := metricOr0(t, n, "mxgate_bayes_errors_total", "op", "lookup"); after <= before {
			t.Errorf("e2e: mxgate_bayes_errors_total{op=lookup} %v -> %v, want a rise", before, after)
		}
		wait.For(t, 10*time.Second, "the bayes error in the mail log", func() (bool, string) {
			evs := n.findEvents("event", "bayes", "op", "lookup")
			return len(evs) > 0, fmt.Sprintf("%d events", len(evs))
		})
	})

	t.Run("RedisBack", func(t *testing.T) {
		rs.Restart()
		if st := send(t, bayesSpamWords); !strings.Contains(st, "BAYES_SPAM=") {
			t.Errorf("e2e: with Redis back: X-Spam-Status %q, want BAYES_SPAM (counts kept by the AOF)", st)
		}
		if st := send(t, bayesHamWords); !strings.Contains(st, "BAYES_HAM=") {
			t.Errorf("e2e: with Redis back: X-Spam-Status %q, want BAYES_HAM", st)
		}
	})
}
