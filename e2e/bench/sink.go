package main

import (
	"bufio"
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// sink is the next hop of the system under test: a minimal SMTP server in
// the bench process that discards messages and counts them.
//
// Why not Postfix's smtp-sink: its -c counter is a progress display
// ("N\r" written to stdout, plus session/quit counters on the same stream)
// that we would have to parse from a pipe, and it tells us nothing about
// *when* the N-th message arrived except through our read latency. Counting
// here is exact (an atomic per "." line, the time taken at the N-th), has no
// extra process to manage, and costs about as little CPU: one goroutine per
// connection, no allocation per command, replies batched while the client
// pipelines. It advertises only PIPELINING and 8BITMIME so that clients use
// plain DATA (no STARTTLS, no CHUNKING).
type sink struct {
	ln    net.Listener
	want  int64
	count atomic.Int64
	done  chan struct{} // closed when count reaches want
	last  time.Time     // when it did (written before done is closed)
	wg    sync.WaitGroup
}

func startSink(want int64) (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{ln: ln, want: want, done: make(chan struct{})}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c)
			}()
		}
	}()
	return s, nil
}

func (s *sink) addr() string { return s.ln.Addr().String() }

func (s *sink) close() { s.ln.Close() }

func (s *sink) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 16<<10)
	w := bufio.NewWriter(c)
	reply := func(text string) bool {
		w.WriteString(text)
		if r.Buffered() == 0 { // the client waits for us: send what we have
			return w.Flush() == nil
		}
		return true
	}
	reply("220 sink.bench.invalid ESMTP\r\n")
	inData, midLine := false, false
	for {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull && inData {
			midLine = true // a long body line: its rest is not a line start
			continue
		}
		if err != nil {
			return
		}
		if inData {
			atStart := !midLine
			midLine = false
			if atStart && string(line) == ".\r\n" {
				inData = false
				if s.count.Add(1) == s.want {
					s.last = time.Now()
					close(s.done)
				}
				if !reply("250 2.0.0 Ok: queued\r\n") {
					return
				}
			}
			continue
		}
		var cmd [4]byte
		copy(cmd[:], bytes.ToUpper(line[:min(4, len(line))]))
		ok := true
		switch string(cmd[:]) {
		case "EHLO":
			ok = reply("250-sink.bench.invalid\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n")
		case "HELO":
			ok = reply("250 sink.bench.invalid\r\n")
		case "MAIL", "RCPT", "RSET", "NOOP":
			ok = reply("250 2.0.0 Ok\r\n")
		case "DATA":
			inData = true
			ok = reply("354 End data with <CR><LF>.<CR><LF>\r\n")
		case "QUIT":
			reply("221 2.0.0 Bye\r\n")
			w.Flush()
			return
		default:
			ok = reply("502 5.5.2 Error: command not recognized\r\n")
		}
		if !ok {
			return
		}
	}
}
