package clamav

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mxgate/mxgate/internal/wait"
)

// fakeClamd is a clamd stand-in on a real listener: each connection is given
// to handle, which plays the server's side of the protocol.
type fakeClamd struct {
	ln       net.Listener
	accepted atomic.Int32
	wg       sync.WaitGroup
}

func newFakeClamd(t *testing.T, network, addr string, handle func(t *testing.T, conn net.Conn)) *fakeClamd {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeClamd{ln: ln}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			f.accepted.Add(1)
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer conn.Close()
				handle(t, conn)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		f.wg.Wait()
	})
	return f
}

// address is the listener's address in Config.Address form.
func (f *fakeClamd) address() string {
	return f.ln.Addr().Network() + ":" + f.ln.Addr().String()
}

func newFakeTCP(t *testing.T, handle func(t *testing.T, conn net.Conn)) *fakeClamd {
	return newFakeClamd(t, "tcp", "127.0.0.1:0", handle)
}

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readCommand reads a NUL-terminated command.
func readCommand(conn net.Conn) (string, error) {
	var cmd []byte
	b := make([]byte, 1)
	for {
		if _, err := io.ReadFull(conn, b); err != nil {
			return string(cmd), err
		}
		if b[0] == 0 {
			return string(cmd), nil
		}
		cmd = append(cmd, b[0])
		if len(cmd) > 64 {
			return string(cmd), errors.New("command too long")
		}
	}
}

// readStream reads the chunks of an INSTREAM up to the zero-length chunk
// and returns the reassembled data and each chunk's length.
func readStream(conn net.Conn) (data []byte, chunks []int, err error) {
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return data, chunks, fmt.Errorf("chunk length: %w", err)
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 {
			return data, chunks, nil
		}
		chunks = append(chunks, int(n))
		start := len(data)
		data = append(data, make([]byte, n)...)
		if _, err := io.ReadFull(conn, data[start:]); err != nil {
			return data, chunks, fmt.Errorf("chunk data: %w", err)
		}
	}
}

// replyWith returns a handler that reads an INSTREAM fully and writes reply
// (which must include its NUL).
func replyWith(reply string) func(*testing.T, net.Conn) {
	return func(t *testing.T, conn net.Conn) {
		if cmd, err := readCommand(conn); err != nil || cmd != "zINSTREAM" {
			t.Errorf("command %q, %v", cmd, err)
			return
		}
		if _, _, err := readStream(conn); err != nil {
			t.Error(err)
			return
		}
		conn.Write([]byte(reply))
	}
}

func wantKind(t *testing.T, err error, kind string) *ScanError {
	t.Helper()
	var se *ScanError
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T), want a *ScanError of kind %s", err, err, kind)
	}
	if se.Kind != kind {
		t.Fatalf("error kind %q (%v), want %q", se.Kind, err, kind)
	}
	if !se.Temporary() {
		t.Fatalf("%v: Temporary() is false", err)
	}
	return se
}

func TestParseAddress(t *testing.T) {
	good := []struct{ in, network, addr string }{
		{"tcp:127.0.0.1:3310", "tcp", "127.0.0.1:3310"},
		{"tcp:clamd.internal:3310", "tcp", "clamd.internal:3310"},
		{"tcp:[::1]:3310", "tcp", "[::1]:3310"},
		{"unix:/run/clamav/clamd.ctl", "unix", "/run/clamav/clamd.ctl"},
	}
	for _, g := range good {
		network, addr, err := ParseAddress(g.in)
		if err != nil || network != g.network || addr != g.addr {
			t.Errorf("ParseAddress(%q) = %q, %q, %v; want %q, %q", g.in, network, addr, err, g.network, g.addr)
		}
	}
	bad := []struct{ in, why string }{
		{"", "no network prefix"},
		{"127.0.0.1:3310", "unknown network \"127.0.0.1\""},
		{"localhost", "no network prefix"},
		{"tcp:127.0.0.1", "not HOST:PORT"},
		{"tcp::3310", "empty host"},
		{"tcp:127.0.0.1:clamd", "port \"clamd\""},
		{"tcp:127.0.0.1:0", "port \"0\""},
		{"tcp:127.0.0.1:65536", "port \"65536\""},
		{"tcp:::1:3310", "not HOST:PORT"},
		{"unix:", "empty socket path"},
		{"unix:run/clamd.ctl", "not absolute"},
		{"udp:127.0.0.1:3310", "unknown network \"udp\""},
	}
	for _, b := range bad {
		_, _, err := ParseAddress(b.in)
		if err == nil || !strings.Contains(err.Error(), b.why) || !strings.Contains(err.Error(), fmt.Sprintf("%q", b.in)) {
			t.Errorf("ParseAddress(%q) error %v; want one naming the address and %q", b.in, err, b.why)
		}
	}
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{
		{Address: "tcp:localhost"},
		{Address: "tcp:localhost:3310", Timeout: -time.Second},
		{Address: "tcp:localhost:3310", MaxConns: -1},
		{Address: "tcp:localhost:3310", ChunkSize: -1},
		{Address: "tcp:localhost:3310", ChunkSize: 1 << 30},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	c := newClient(t, Config{Address: "tcp:localhost:3310"})
	if c.timeout != DefaultTimeout || cap(c.slots) != DefaultMaxConns || c.chunkSize != DefaultChunkSize {
		t.Errorf("defaults: timeout %v, max conns %d, chunk size %d", c.timeout, cap(c.slots), c.chunkSize)
	}
}

// TestScanFraming checks the exact bytes on the wire: the command, chunks of
// at most ChunkSize with a 4-byte big-endian length, a zero-length chunk,
// and the reassembled data equal to the input, for sizes around the chunk
// size and for readers that return short reads.
func TestScanFraming(t *testing.T) {
	const chunk = 1024
	type seen struct {
		data   []byte
		chunks []int
	}
	got := make(chan seen, 1)
	f := newFakeTCP(t, func(t *testing.T, conn net.Conn) {
		cmd, err := readCommand(conn)
		if err != nil || cmd != "zINSTREAM" {
			t.Errorf("command %q, %v", cmd, err)
			return
		}
		data, chunks, err := readStream(conn)
		if err != nil {
			t.Error(err)
			return
		}
		got <- seen{data, chunks}
		conn.Write([]byte("stream: OK\x00"))
	})
	c := newClient(t, Config{Address: f.address(), ChunkSize: chunk, Timeout: 10 * time.Second})

	rng := rand.New(rand.NewPCG(1, 2))
	readers := map[string]func([]byte) io.Reader{
		"whole":    func(b []byte) io.Reader { return bytes.NewReader(b) },
		"one byte": func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
		"half":     func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
		"data+EOF": func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) },
	}
	for _, size := range []int{0, 1, 2, chunk - 1, chunk, chunk + 1, 2*chunk - 1, 2 * chunk, 2*chunk + 1, 7*chunk + 13, 300_000} {
		for name, reader := range readers {
			if name == "one byte" && size > 3*chunk {
				continue
			}
			in := make([]byte, size)
			for i := range in {
				in[i] = byte(rng.Uint32())
			}
			res, err := c.Scan(context.Background(), reader(in))
			if err != nil || res.Infected || res.Raw != "stream: OK" {
				t.Fatalf("size %d, %s reader: %+v, %v", size, name, res, err)
			}
			s := <-got
			if !bytes.Equal(s.data, in) {
				t.Fatalf("size %d, %s reader: clamd got %d different bytes", size, name, len(s.data))
			}
			// Full chunks: every chunk but the last is exactly ChunkSize.
			total := 0
			for i, n := range s.chunks {
				if n < 1 || n > chunk || (i < len(s.chunks)-1 && n != chunk) {
					t.Fatalf("size %d, %s reader: chunk lengths %v", size, name, s.chunks)
				}
				total += n
			}
			if wantChunks := (size + chunk - 1) / chunk; len(s.chunks) != wantChunks || total != size {
				t.Fatalf("size %d, %s reader: %d chunks totalling %d, want %d", size, name, len(s.chunks), total, wantChunks)
			}
		}
	}
}

// TestScanDefaultChunkSize streams a few MiB with the default chunk size.
func TestScanDefaultChunkSize(t *testing.T) {
	var got []byte
	var chunks []int
	f := newFakeTCP(t, func(t *testing.T, conn net.Conn) {
		readCommand(conn)
		var err error
		got, chunks, err = readStream(conn)
		if err != nil {
			t.Error(err)
		}
		conn.Write([]byte("stream: OK\x00"))
	})
	c := newClient(t, Config{Address: f.address()})
	in := bytes.Repeat([]byte("0123456789abcdef"), (3<<20+5)/16)
	if _, err := c.Scan(context.Background(), bytes.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	f.ln.Close()
	f.wg.Wait()
	if !bytes.Equal(got, in) || len(chunks) != (len(in)+DefaultChunkSize-1)/DefaultChunkSize || chunks[0] != DefaultChunkSize {
		t.Fatalf("got %d bytes in %d chunks (first %d)", len(got), len(chunks), chunks[0])
	}
}

func TestScanReplies(t *testing.T) {
	for _, tc := range []struct {
		reply    string
		infected bool
		virus    string
		kind     string // "" for a verdict
	}{
		{reply: "stream: OK\x00"},
		{reply: "stream: Eicar-Test-Signature.UNOFFICIAL FOUND\x00", infected: true, virus: "Eicar-Test-Signature.UNOFFICIAL"},
		{reply: "stream: Win.Test.EICAR_HDB-1 FOUND\x00", infected: true, virus: "Win.Test.EICAR_HDB-1"},
		{reply: "INSTREAM size limit exceeded. ERROR\x00", kind: KindSizeLimit},
		{reply: "stream: Can't create temporary file ERROR\x00", kind: KindUnavailable},
		{reply: "Error processing command. ERROR\x00", kind: KindUnavailable},
		{reply: "UNKNOWN COMMAND\x00", kind: KindProtocol},
		{reply: "stream: FOUND\x00", kind: KindProtocol},
		{reply: "stream:  FOUND\x00", kind: KindProtocol},
		{reply: "stream: OK \x00", kind: KindProtocol},
		{reply: "stream: ok\x00", kind: KindProtocol},
		{reply: "\x00", kind: KindProtocol},
		{reply: "PONG\x00", kind: KindProtocol},
		{reply: "stream: OK", kind: KindProtocol},              // closed before the NUL
		{reply: "stream: OK\n", kind: KindProtocol},            // the newline form
		{reply: strings.Repeat("x", 5000), kind: KindProtocol}, // no NUL at all
		{reply: "", kind: KindUnavailable},                     // closed without a reply
	} {
		f := newFakeTCP(t, replyWith(tc.reply))
		c := newClient(t, Config{Address: f.address(), Timeout: 10 * time.Second})
		res, err := c.Scan(context.Background(), strings.NewReader("a message\r\n"))
		if tc.kind != "" {
			se := wantKind(t, err, tc.kind)
			if res != (Result{}) {
				t.Errorf("reply %q: error with a result %+v", tc.reply, res)
			}
			if r := strings.TrimSuffix(tc.reply, "\x00"); se.Kind != KindUnavailable && len(r) < 100 && r != "" && se.Reply != r {
				t.Errorf("reply %q: ScanError.Reply %q", tc.reply, se.Reply)
			}
			continue
		}
		if err != nil {
			t.Fatalf("reply %q: %v", tc.reply, err)
		}
		want := Result{Infected: tc.infected, Virus: tc.virus, Raw: strings.TrimSuffix(tc.reply, "\x00")}
		if res != want {
			t.Errorf("reply %q: %+v, want %+v", tc.reply, res, want)
		}
	}
}

// TestScanReplyByteByByte has the server write its reply one byte at a
// time. Over net.Pipe each write is delivered to exactly one read, so the
// client sees every partial read; over TCP the bytes may coalesce, but are
// written with a round trip of reads in between where the kernel allows.
func TestScanReplyByteByByte(t *testing.T) {
	const reply = "stream: Eicar-Test-Signature.UNOFFICIAL FOUND\x00"
	handle := func(t *testing.T, conn net.Conn) {
		readCommand(conn)
		if _, _, err := readStream(conn); err != nil {
			t.Error(err)
			return
		}
		for i := range len(reply) {
			if _, err := conn.Write([]byte{reply[i]}); err != nil {
				t.Error(err)
				return
			}
		}
	}
	pipeDial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		client, server := net.Pipe()
		go func() {
			defer server.Close()
			handle(t, server)
		}()
		return client, nil
	}
	tcp := newFakeTCP(t, handle)
	for name, cfg := range map[string]Config{
		"pipe": {Address: "tcp:fake:3310", Dialer: pipeDial, Timeout: 10 * time.Second},
		"tcp":  {Address: tcp.address(), Timeout: 10 * time.Second},
	} {
		c := newClient(t, cfg)
		res, err := c.Scan(context.Background(), strings.NewReader(strings.Repeat("body\r\n", 50000)))
		if err != nil || !res.Infected || res.Virus != "Eicar-Test-Signature.UNOFFICIAL" {
			t.Errorf("%s: %+v, %v", name, res, err)
		}
	}
}

// TestScanServerClosesMidStream: a server that stops reading and closes the
// connection with no reply is unavailable, not a verdict.
func TestScanServerClosesMidStream(t *testing.T) {
	f := newFakeTCP(t, func(t *testing.T, conn net.Conn) {
		readCommand(conn)
		io.CopyN(io.Discard, conn, 100_000)
		// Unread data makes the kernel reset the connection.
	})
	c := newClient(t, Config{Address: f.address(), Timeout: 10 * time.Second})
	_, err := c.Scan(context.Background(), bytes.NewReader(make([]byte, 20<<20)))
	se := wantKind(t, err, KindUnavailable)
	if se.Op != "send" {
		t.Errorf("op %q, want send", se.Op)
	}

	// Closed after the end of the stream, before replying.
	f2 := newFakeTCP(t, func(t *testing.T, conn net.Conn) {
		readCommand(conn)
		readStream(conn)
	})
	c2 := newClient(t, Config{Address: f2.address(), Timeout: 10 * time.Second})
	_, err = c2.Scan(context.Background(), strings.NewReader("short"))
	wantKind(t, err, KindUnavailable)
}

// TestScanSizeLimitWhileSending plays clamd's StreamMaxLength: it replies
// and closes while the client is still writing. The reply, not the broken
// pipe, is the error.
func TestScanSizeLimitWhileSending(t *testing.T) {
	for _, reply := range []string{"INSTREAM size limit exceeded. ERROR\x00", "stream: Eicar-Test-Signature.UNOFFICIAL FOUND\x00"} {
		f := newFakeTCP(t, func(t *testing.T, conn net.Conn) {
			readCommand(conn)
			io.CopyN(io.Discard, conn, 1<<20)
			conn.Write([]byte(reply))
		})
		c := newClient(t, Config{Address: f.address(), Timeout: 10 * time.Second})
		_, err := c.Scan(context.Background(), bytes.NewReader(make([]byte, 64<<20)))
		if strings.HasPrefix(reply, "INSTREAM") {
			se := wantKind(t, err, KindSizeLimit)
			if se.Reply != "INSTREAM size limit exceeded. ERROR" {
				t.Errorf("reply %q", se.Reply)
			}
		} else {
			// A "verdict" on part of the message is not a verdict.
			wantKind(t, err, KindProtocol)
		}
	}
}

// TestScanTimeout: a server that never answers, and one that stops
// reading, end in a timeout from the context or from Config.Timeout.
func TestScanTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	silent := newFakeTCP(t, func(t *testing.T, conn net.Conn) {
		readCommand(conn)
		readStream(conn)
		<-release
	})
	stalled := newFakeTCP(t, func(t *testing.T, conn net.Conn) {
		<-release
	})
	const short = 200 * time.Millisecond
	for _, tc := range []struct {
		name string
		addr string
		size int
	}{
		{"silent", silent.address(), 1000},
		{"not reading", stalled.address(), 64 << 20},
	} {
		t.Run(tc.name+"/ctx", func(t *testing.T) {
			c := newClient(t, Config{Address: tc.addr, Timeout: time.Minute})
			ctx, cancel := context.WithTimeout(context.Background(), short)
			defer cancel()
			start := time.Now()
			_, err := c.Scan(ctx, bytes.NewReader(make([]byte, tc.size)))
			se := wantKind(t, err, KindTimeout)
			if !errors.Is(se, context.DeadlineExceeded) {
				t.Errorf("%v is not context.DeadlineExceeded", se)
			}
			if d := time.Since(start); d > short+5*time.Second {
				t.Errorf("returned after %v", d)
			}
		})
		t.Run(tc.name+"/config", func(t *testing.T) {
			c := newClient(t, Config{Address: tc.addr, Timeout: short})
			start := time.Now()
			_, err := c.Scan(context.Background(), bytes.NewReader(make([]byte, tc.size)))
			wantKind(t, err, KindTimeout)
			if d := time.Since(start); d < short || d > short+5*time.Second {
				t.Errorf("returned after %v, want about %v", d, short)
			}
		})
		t.Run(tc.name+"/cancel", func(t *testing.T) {
			c := newClient(t, Config{Address: tc.addr, Timeout: time.Minute})
			ctx, cancel := context.WithCancel(context.Background())
			// Cancel once the server holds the connection.
			before := silent.accepted.Load() + stalled.accepted.Load()
			go func() {
				tick := time.NewTicker(time.Millisecond)
				defer tick.Stop()
				for range tick.C {
					if silent.accepted.Load()+stalled.accepted.Load() > before {
						cancel()
						return
					}
				}
			}()
			_, err := c.Scan(ctx, bytes.NewReader(make([]byte, tc.size)))
			se := wantKind(t, err, KindTimeout)
			if !errors.Is(se, context.Canceled) {
				t.Errorf("%v is not context.Canceled", se)
			}
		})
	}

	// PING and VERSION have the same bound.
	c := newClient(t, Config{Address: stalled.address(), Timeout: short})
	wantKind(t, c.Ping(context.Background()), KindTimeout)
	_, err := c.Version(context.Background())
	wantKind(t, err, KindTimeout)
}

func TestScanSourceError(t *testing.T) {
	f := newFakeTCP(t, func(t *testing.T, conn net.Conn) {
		readCommand(conn)
		if _, _, err := readStream(conn); err == nil {
			t.Error("the stream was ended after a read error")
		}
	})
	c := newClient(t, Config{Address: f.address(), Timeout: 10 * time.Second})
	boom := errors.New("disk on fire")
	_, err := c.Scan(context.Background(), io.MultiReader(strings.NewReader("partial"), iotest.ErrReader(boom)))
	se := wantKind(t, err, KindSource)
	if !errors.Is(se, boom) {
		t.Errorf("%v does not wrap the reader's error", se)
	}
}

func TestScanRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := newClient(t, Config{Address: "tcp:" + addr, Timeout: 10 * time.Second})
	_, err = c.Scan(context.Background(), strings.NewReader("x"))
	se := wantKind(t, err, KindUnavailable)
	if se.Op != "dial" {
		t.Errorf("op %q", se.Op)
	}
	wantKind(t, c.Ping(context.Background()), KindUnavailable)
}

// TestPoolBound: with MaxConns scans in flight, the next one waits for a
// slot without connecting, gives up with its context, and proceeds as soon
// as a slot is free.
func TestPoolBound(t *testing.T) {
	const maxConns = 3
	hold := make(chan struct{})
	f := newFakeTCP(t, func(t *testing.T, conn net.Conn) {
		if cmd, _ := readCommand(conn); cmd == "zPING" {
			conn.Write([]byte("PONG\x00"))
			return
		}
		readStream(conn)
		<-hold
		conn.Write([]byte("stream: OK\x00"))
	})
	var dials atomic.Int32
	c := newClient(t, Config{Address: f.address(), MaxConns: maxConns, Timeout: time.Minute,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}})

	results := make(chan error, maxConns+1)
	scan := func() { _, err := c.Scan(context.Background(), strings.NewReader("m")); results <- err }
	for range maxConns {
		go scan()
	}
	wait.For(t, 10*time.Second, "every connection accepted", func() bool { return f.accepted.Load() == maxConns })

	// The next scan waits, then its context ends: no connection was made.
	go scan()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Scan(ctx, strings.NewReader("m"))
	se := wantKind(t, err, KindTimeout)
	if se.Op != "wait for slot" {
		t.Errorf("op %q", se.Op)
	}
	if n := dials.Load(); n != maxConns {
		t.Fatalf("%d dials with %d slots", n, maxConns)
	}
	// PING does not wait for a slot.
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("PING with every slot taken: %v", err)
	}

	close(hold)
	for range maxConns + 1 {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	if n := f.accepted.Load(); n != maxConns+2 {
		t.Errorf("%d connections, want %d", n, maxConns+2)
	}
}

func TestPingVersion(t *testing.T) {
	f := newFakeTCP(t, func(t *testing.T, conn net.Conn) {
		switch cmd, _ := readCommand(conn); cmd {
		case "zPING":
			conn.Write([]byte("PONG\x00"))
		case "zVERSION":
			conn.Write([]byte("ClamAV 1.4.6/27470/Mon Nov 23 09:00:00 2026\x00"))
		default:
			conn.Write([]byte("UNKNOWN COMMAND\x00"))
		}
	})
	c := newClient(t, Config{Address: f.address(), Timeout: 10 * time.Second})
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, err := c.Version(context.Background())
	if err != nil || v != "ClamAV 1.4.6/27470/Mon Nov 23 09:00:00 2026" {
		t.Fatalf("version %q, %v", v, err)
	}
}

func TestUnixSocket(t *testing.T) {
	// Not t.TempDir: a socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "clamav")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "clamd.sock")
	f := newFakeClamd(t, "unix", sock, func(t *testing.T, conn net.Conn) {
		switch cmd, _ := readCommand(conn); cmd {
		case "zPING":
			conn.Write([]byte("PONG\x00"))
		case "zINSTREAM":
			data, _, _ := readStream(conn)
			if bytes.Contains(data, []byte("virus")) {
				conn.Write([]byte("stream: Test.Virus FOUND\x00"))
			} else {
				conn.Write([]byte("stream: OK\x00"))
			}
		}
	})
	if f.address() != "unix:"+sock {
		t.Fatalf("address %q", f.address())
	}
	c := newClient(t, Config{Address: "unix:" + sock, Timeout: 10 * time.Second})
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Scan(context.Background(), strings.NewReader("hello")); err != nil || res.Infected {
		t.Fatalf("%+v, %v", res, err)
	}
	if res, err := c.Scan(context.Background(), strings.NewReader("a virus")); err != nil || res.Virus != "Test.Virus" {
		t.Fatalf("%+v, %v", res, err)
	}
}

func TestMetrics(t *testing.T) {
	f := newFakeTCP(t, func(t *testing.T, conn net.Conn) {
		readCommand(conn)
		data, _, _ := readStream(conn)
		switch string(data) {
		case "clean":
			conn.Write([]byte("stream: OK\x00"))
		case "virus":
			conn.Write([]byte("stream: Test.Virus FOUND\x00"))
		default:
			conn.Write([]byte("INSTREAM size limit exceeded. ERROR\x00"))
		}
	})
	c := newClient(t, Config{Address: f.address(), Timeout: 10 * time.Second})
	before := gather(t)
	for _, body := range []string{"clean", "virus", "virus", "big"} {
		c.Scan(context.Background(), strings.NewReader(body))
	}
	after := gather(t)
	for series, want := range map[string]float64{
		`mxgate_clamav_scans_total{result="clean"}`:           1,
		`mxgate_clamav_scans_total{result="infected"}`:        2,
		`mxgate_clamav_scans_total{result="error"}`:           1,
		`mxgate_clamav_scan_errors_total{kind="size_limit"}`:  1,
		`mxgate_clamav_scan_errors_total{kind="unavailable"}`: 0,
		`mxgate_clamav_scan_duration_seconds_count`:           4,
	} {
		if _, ok := after[series]; !ok {
			t.Errorf("no series %s", series)
		}
		if got := after[series] - before[series]; got != want {
			t.Errorf("%s grew by %v, want %v", series, got, want)
		}
	}
}

// gather reads this package's series from the default registry as
// `name{label="value"}` → value (histograms: their _count).
func gather(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "mxgate_clamav_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				out[mf.GetName()+"_count"] = float64(h.GetSampleCount())
				continue
			}
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetCounter().GetValue()
		}
	}
	return out
}

func TestScanErrorText(t *testing.T) {
	e := &ScanError{Kind: KindSizeLimit, Op: "reply", Reply: "INSTREAM size limit exceeded. ERROR"}
	if got, want := e.Error(), `clamav: reply: size_limit: clamd replied "INSTREAM size limit exceeded. ERROR"`; got != want {
		t.Errorf("%s\nwant %s", got, want)
	}
	var tmp interface{ Temporary() bool }
	if !errors.As(error(e), &tmp) || !tmp.Temporary() {
		t.Error("not temporary")
	}
}
