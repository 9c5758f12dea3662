package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The load generator is a plain SMTP client over net.Conn: go-smtp's client
// (textproto, per-command allocations) would cost the system under test CPU
// on a 2-core machine. Each connection says EHLO once and then sends
// messages until N have been taken; MAIL, RCPT and DATA go in one write when
// the server offers PIPELINING. Every reply code is checked.

const (
	sender    = "sender@example.org"
	recipient = "user@bench.test"
)

type loadResult struct {
	start, end time.Time       // first MAIL sent, last 250 received
	latencies  []time.Duration // end of DATA to 250, one per message
}

func (l loadResult) percentile(p int) time.Duration {
	if len(l.latencies) == 0 {
		return 0
	}
	i := (len(l.latencies)*p + 99) / 100 // nearest rank
	return l.latencies[max(i-1, 0)]
}

func runLoad(addr string, n, c, size int) (loadResult, error) {
	return runLoadFrom(addr, 0, n, c, size)
}

// runLoadFrom is runLoad with the messages numbered from first (their
// Message-IDs), for a load sent in slices.
func runLoadFrom(addr string, first int64, n, c, size int) (loadResult, error) {
	body := messageBody(size)
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		mu      sync.Mutex
		res     loadResult
		firstEr error
	)
	for i := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := sendSession(addr, i, first, first+int64(n), &next, body)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstEr == nil {
				firstEr = fmt.Errorf("connection %d: %w", i, err)
			}
			if len(s.latencies) == 0 {
				return
			}
			if res.start.IsZero() || s.start.Before(res.start) {
				res.start = s.start
			}
			if s.end.After(res.end) {
				res.end = s.end
			}
			res.latencies = append(res.latencies, s.latencies...)
		}()
	}
	wg.Wait()
	if firstEr != nil {
		return res, firstEr
	}
	if len(res.latencies) != n {
		return res, fmt.Errorf("sent %d of %d messages", len(res.latencies), n)
	}
	slices.Sort(res.latencies)
	return res, nil
}

// messageBody returns the message after the Message-ID header (which
// sendSession writes per message), ending in "\r\n.\r\n", so that the whole
// message is size bytes.
func messageBody(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: <" + sender + ">\r\nTo: <" + recipient + ">\r\n")
	b.WriteString("Subject: mxgate bench\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	line := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 2)[:76] + "\r\n"
	fill := size - len(messageID(0)) - b.Len()
	for ; fill >= len(line); fill -= len(line) {
		b.WriteString(line)
	}
	if fill > 0 {
		b.WriteString(strings.Repeat("x", max(fill-2, 0)) + "\r\n")
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

func messageID(i int64) string {
	return fmt.Sprintf("Message-ID: <%010d.bench@example.org>\r\n", i)
}

// sendSession sends messages numbered from first until next reaches end.
func sendSession(addr string, conn int, first, end int64, next *atomic.Int64, body []byte) (res loadResult, err error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return res, err
	}
	defer nc.Close()
	r := bufio.NewReaderSize(nc, 4096)
	expect := func(step string, want int) error {
		code, text, err := readReply(r)
		if err != nil {
			return fmt.Errorf("%s: reading reply: %w", step, err)
		}
		if code != want {
			return fmt.Errorf("%s: want %d, got %q", step, want, text)
		}
		return nil
	}
	if err := expect("banner", 220); err != nil {
		return res, err
	}
	if _, err := fmt.Fprintf(nc, "EHLO client%d.bench.invalid\r\n", conn); err != nil {
		return res, err
	}
	code, text, err := readReply(r)
	if err != nil || code != 250 {
		return res, fmt.Errorf("EHLO: got %q (%v)", text, err)
	}
	pipelining := strings.Contains(strings.ToUpper(text), "PIPELINING")

	envelope := []string{"MAIL FROM:<" + sender + ">\r\n", "RCPT TO:<" + recipient + ">\r\n", "DATA\r\n"}
	wants := []int{250, 250, 354}
	all := []byte(strings.Join(envelope, ""))
	msg := make([]byte, 0, 64+len(body))
	for {
		i := first + next.Add(1) - 1
		if i >= end {
			break
		}
		if res.start.IsZero() {
			res.start = time.Now()
		}
		if pipelining {
			if _, err := nc.Write(all); err != nil {
				return res, err
			}
		}
		for k, cmd := range envelope {
			if !pipelining {
				if _, err := nc.Write([]byte(cmd)); err != nil {
					return res, err
				}
			}
			if err := expect(strings.TrimSpace(cmd), wants[k]); err != nil {
				return res, fmt.Errorf("message %d: %w", i, err)
			}
		}
		msg = append(append(msg[:0], messageID(i)...), body...)
		if _, err := nc.Write(msg); err != nil {
			return res, err
		}
		sent := time.Now() // "\r\n.\r\n" is out
		if err := expect("end of DATA", 250); err != nil {
			return res, fmt.Errorf("message %d: %w", i, err)
		}
		res.end = time.Now()
		res.latencies = append(res.latencies, res.end.Sub(sent))
	}
	if _, err := nc.Write([]byte("QUIT\r\n")); err != nil {
		return res, err
	}
	return res, expect("QUIT", 221)
}

// readReply reads one (possibly multi-line) SMTP reply.
func readReply(r *bufio.Reader) (code int, text string, err error) {
	var all strings.Builder
	for {
		line, err := r.ReadString('\n')
		all.WriteString(line)
		if err != nil {
			return 0, all.String(), err
		}
		if len(line) < 4 || (line[3] != ' ' && line[3] != '-' && line[3] != '\r') {
			return 0, all.String(), fmt.Errorf("malformed reply line %q", line)
		}
		if line[3] != '-' {
			_, err := fmt.Sscanf(line[:3], "%d", &code)
			return code, all.String(), err
		}
	}
}
