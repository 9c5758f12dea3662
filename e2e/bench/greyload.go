package main

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The greylist load: each client keeps one connection and loops MAIL,
// RCPT, RSET (in one write when the server offers PIPELINING) with a
// recipient no one has used, so that every RCPT is a new triplet and the
// system under test must store it and answer its greylisting reply. The
// client network (127.0.0.0/24) and the sender are the same for all.

// greyClient is one connected SMTP client, past EHLO.
type greyClient struct {
	id         int
	nc         net.Conn
	r          *bufio.Reader
	pipelining bool
	seq        int // the next recipient's number
}

// greyLoad is what the clients measured while they were driven.
type greyLoad struct {
	elapsed   time.Duration   // from the start to the last reply
	decisions int             // RCPT replies that were the greylisting reply
	rtts      []time.Duration // MAIL+RCPT+RSET written to the RCPT reply
	// other counts the RCPT replies that were not the greylisting reply,
	// by their text (e.g. a 250: the store failed and greylisting failed
	// open).
	other map[string]int
}

func (g greyLoad) rate() float64 { return float64(g.decisions) / g.elapsed.Seconds() }

// add accumulates another slice of driving.
func (g *greyLoad) add(o greyLoad) {
	g.elapsed += o.elapsed
	g.decisions += o.decisions
	g.rtts = append(g.rtts, o.rtts...)
	if g.other == nil {
		g.other = map[string]int{}
	}
	for k, v := range o.other {
		g.other[k] += v
	}
}

func (g greyLoad) errors() int {
	n := 0
	for _, c := range g.other {
		n += c
	}
	return n
}

// percentile needs rtts sorted.
func (g greyLoad) percentile(p int) time.Duration {
	return loadResult{latencies: g.rtts}.percentile(p)
}

// dialGreyClients connects n clients, spread round-robin over addrs, and
// says EHLO on each. On error the connections made are closed.
func dialGreyClients(addrs []string, n int) ([]*greyClient, error) {
	cs := make([]*greyClient, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range cs {
		wg.Go(func() { cs[i], errs[i] = dialGreyClient(addrs[i%len(addrs)], i) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			closeGreyClients(cs)
			return nil, fmt.Errorf("client %d to %s: %w", i, addrs[i%len(addrs)], err)
		}
	}
	return cs, nil
}

func dialGreyClient(addr string, id int) (*greyClient, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := &greyClient{id: id, nc: nc, r: bufio.NewReaderSize(nc, 4096)}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if code, text, err := readReply(c.r); err != nil || code != 220 {
		nc.Close()
		return nil, fmt.Errorf("banner: %q (%v)", text, err)
	}
	if _, err := fmt.Fprintf(nc, "EHLO client%d.bench.invalid\r\n", id); err != nil {
		nc.Close()
		return nil, err
	}
	code, text, err := readReply(c.r)
	if err != nil || code != 250 {
		nc.Close()
		return nil, fmt.Errorf("EHLO: %q (%v)", text, err)
	}
	c.pipelining = strings.Contains(strings.ToUpper(text), "PIPELINING")
	nc.SetDeadline(time.Time{})
	return c, nil
}

// closeGreyClients says QUIT, without waiting for the reply, and closes.
func closeGreyClients(cs []*greyClient) {
	for _, c := range cs {
		if c != nil {
			c.nc.SetWriteDeadline(time.Now().Add(time.Second))
			c.nc.Write([]byte("QUIT\r\n"))
			c.nc.Close()
		}
	}
}

// driveGrey runs every client for d from now; they stay connected. want
// is the start of the greylisting reply (e.g. "451 4.7.1").
func driveGrey(cs []*greyClient, d time.Duration, want string) (greyLoad, error) {
	var (
		res     greyLoad
		mu      sync.Mutex
		wg      sync.WaitGroup
		firstEr error
		end     time.Time
	)
	start := time.Now()
	deadline := start.Add(d)
	for _, c := range cs {
		wg.Go(func() {
			s, err := c.run(deadline, want)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstEr == nil {
				firstEr = fmt.Errorf("client %d: %w", c.id, err)
			}
			res.add(s.greyLoad)
			if s.end.After(end) {
				end = s.end
			}
		})
	}
	wg.Wait()
	if !end.IsZero() {
		res.elapsed = end.Sub(start)
	}
	if firstEr == nil && res.decisions == 0 {
		firstEr = fmt.Errorf("no greylisting reply (%q) in %v; RCPT replies: %v", want, d, res.other)
	}
	return res, firstEr
}

const greySender = "sender@example.org"

// clientLoad is one client's share of a slice.
type clientLoad struct {
	greyLoad
	end time.Time // its last RSET reply
}

// run loops MAIL, RCPT, RSET until deadline.
func (c *greyClient) run(deadline time.Time, want string) (res clientLoad, err error) {
	res.other = map[string]int{}
	// A stuck server fails the run instead of hanging it.
	c.nc.SetDeadline(deadline.Add(30 * time.Second))
	mailCmd := "MAIL FROM:<" + greySender + ">\r\n"
	buf := make([]byte, 0, 128)
	expect := func(step string, code int) error {
		got, text, err := readReply(c.r)
		if err != nil {
			return fmt.Errorf("%s: reading reply: %w", step, err)
		}
		if got != code {
			return fmt.Errorf("%s: want %d, got %q", step, code, text)
		}
		return nil
	}
	for ; time.Now().Before(deadline); c.seq++ {
		// A recipient no client has used: g<client>.<seq>@bench.test.
		buf = append(buf[:0], mailCmd...)
		rcptAt := len(buf)
		buf = append(buf, "RCPT TO:<g"...)
		buf = strconv.AppendInt(buf, int64(c.id), 10)
		buf = append(buf, '.')
		buf = strconv.AppendInt(buf, int64(c.seq), 10)
		buf = append(buf, "@bench.test>\r\n"...)
		rsetAt := len(buf)
		buf = append(buf, "RSET\r\n"...)

		sent := time.Now()
		if c.pipelining {
			if _, err := c.nc.Write(buf); err != nil {
				return res, err
			}
		} else if _, err := c.nc.Write(buf[:rcptAt]); err != nil {
			return res, err
		}
		if err := expect("MAIL", 250); err != nil {
			return res, err
		}
		if !c.pipelining {
			if _, err := c.nc.Write(buf[rcptAt:rsetAt]); err != nil {
				return res, err
			}
		}
		_, text, err := readReply(c.r)
		if err != nil {
			return res, fmt.Errorf("RCPT: reading reply: %w", err)
		}
		if strings.HasPrefix(text, want) {
			res.decisions++
			res.rtts = append(res.rtts, time.Since(sent))
		} else {
			// Postfix names the recipient: take it out, so that one
			// kind of reply is one entry.
			line, _, _ := strings.Cut(text, "\r\n")
			rcpt := string(buf[rcptAt+len("RCPT TO:<") : rsetAt-len(">\r\n")])
			res.other[truncateReply(strings.ReplaceAll(line, rcpt, "RCPT"))]++
		}
		if !c.pipelining {
			if _, err := c.nc.Write(buf[rsetAt:]); err != nil {
				return res, err
			}
		}
		if err := expect("RSET", 250); err != nil {
			return res, err
		}
		res.end = time.Now()
	}
	return res, nil
}

// truncateReply keeps a reply short enough to print.
func truncateReply(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}
