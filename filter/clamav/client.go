// Package clamav is a client for ClamAV's daemon, clamd, speaking the part of
// its protocol a mail gateway needs: INSTREAM to scan a message streamed from
// the spool, PING for health checks, VERSION for logs.
//
// The protocol is described in clamd(8), section COMMANDS. Every command is
// sent in its 'z' form ("zINSTREAM\0"): the command and clamd's reply are
// then terminated by a NUL byte, which no reply text contains, instead of a
// newline.
//
// A scan has exactly two verdicts, clean and infected. Everything else —
// clamd's size limit, an ERROR reply, a reply we cannot parse, a timeout, a
// refused or dropped connection — is a *ScanError, never a verdict: the
// caller decides what an unscanned message gets (README, "Virus scanning": clamav.on_error).
package clamav

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Defaults for the zero values of Config.
const (
	DefaultTimeout   = 30 * time.Second
	DefaultMaxConns  = 8
	DefaultChunkSize = 64 << 10

	// maxChunkSize keeps a chunk well under clamd's smallest sensible
	// StreamMaxLength; a single chunk over that limit is refused whole.
	maxChunkSize = 16 << 20
	// maxReplyLen bounds what we read while looking for the NUL that ends a
	// reply. clamd's replies are one short line (a virus name is < 256 bytes).
	maxReplyLen = 4096
)

// Config configures a Client. Only Address is required.
type Config struct {
	// Address of clamd: "tcp:HOST:PORT" or "unix:/absolute/path".
	Address string
	// Timeout bounds a whole call (Scan, Ping, Version): waiting for a pool
	// slot, connecting, streaming the message and reading the reply.
	// Zero means DefaultTimeout; a scan never waits forever.
	Timeout time.Duration
	// MaxConns bounds the scans in flight to this clamd; further scans wait
	// for a slot (respecting their context). Zero means DefaultMaxConns.
	// Keep it at or below clamd's MaxThreads.
	MaxConns int
	// ChunkSize is the largest INSTREAM chunk sent. Zero means
	// DefaultChunkSize (64 KiB).
	ChunkSize int
	// Dialer connects to clamd; nil means a net.Dialer. Tests use it to put
	// a fake clamd behind any transport.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Result is clamd's verdict on one scanned stream.
type Result struct {
	Infected bool
	// Virus is the signature name clamd reported, e.g.
	// "Eicar-Test-Signature.UNOFFICIAL"; empty when clean.
	Virus string
	// Raw is clamd's reply without its terminating NUL.
	Raw string
}

// Kinds of ScanError; they are the values of the metric label "kind".
const (
	// KindSizeLimit: clamd refused the stream as longer than its
	// StreamMaxLength ("INSTREAM size limit exceeded. ERROR").
	KindSizeLimit = "size_limit"
	// KindUnavailable: clamd could not be reached, dropped the connection,
	// or replied with an ERROR of its own (e.g. no space for a temp file).
	KindUnavailable = "unavailable"
	// KindTimeout: the call did not finish within Config.Timeout or before
	// its context ended (deadline or cancellation).
	KindTimeout = "timeout"
	// KindProtocol: clamd's reply is not one this client understands.
	KindProtocol = "protocol"
	// KindSource: reading the message to scan failed (our side, not clamd's).
	KindSource = "source"
)

// ScanError is every error the Client returns. It is never a verdict: the
// message was not scanned.
type ScanError struct {
	Kind  string // one of the Kind constants
	Op    string // what was being done: "wait for slot", "dial", "send", "reply"
	Reply string // clamd's reply, when it sent one
	Err   error  // the underlying error, if any
}

func (e *ScanError) Error() string {
	var b strings.Builder
	b.WriteString("clamav: ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	b.WriteString(e.Kind)
	if e.Reply != "" {
		fmt.Fprintf(&b, ": clamd replied %q", e.Reply)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *ScanError) Unwrap() error { return e.Err }

// Temporary reports true for every ScanError: each kind may go away on a
// retry (clamd restarts, the load drops, the operator raises
// StreamMaxLength), and a message that could not be scanned must be
// tempfailed rather than bounced unless configured otherwise.
func (e *ScanError) Temporary() bool { return true }

// Client talks to one clamd. It is safe for concurrent use.
//
// Each call opens a fresh connection and closes it after the reply; there is
// no connection reuse. clamd's only way to reuse a connection is an IDSESSION,
// and a session is a poor fit: replies carry request ids and may come out of
// order, clamd ends the whole session on an INSTREAM size-limit error or when
// its IdleTimeout passes, and a connection in an unknown state after a
// timeout must be thrown away anyway. Connecting to clamd over loopback or a
// unix socket costs tens of microseconds against milliseconds for a scan, so
// the pool is only a bound on concurrent scans (a semaphore), which is what
// protects clamd (its MaxThreads and MaxQueue) under a burst of mail.
type Client struct {
	network, addr string
	timeout       time.Duration
	chunkSize     int
	dial          func(ctx context.Context, network, addr string) (net.Conn, error)
	slots         chan struct{}
}

// New validates cfg and returns a Client. It does not connect; use Ping to
// check that clamd answers.
func New(cfg Config) (*Client, error) {
	network, addr, err := ParseAddress(cfg.Address)
	if err != nil {
		return nil, err
	}
	c := &Client{network: network, addr: addr, timeout: cfg.Timeout, chunkSize: cfg.ChunkSize, dial: cfg.Dialer}
	switch {
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("clamav: timeout %v is negative", cfg.Timeout)
	case cfg.Timeout == 0:
		c.timeout = DefaultTimeout
	}
	maxConns := cfg.MaxConns
	switch {
	case maxConns < 0:
		return nil, fmt.Errorf("clamav: max connections %d is negative", maxConns)
	case maxConns == 0:
		maxConns = DefaultMaxConns
	}
	c.slots = make(chan struct{}, maxConns)
	switch {
	case cfg.ChunkSize < 0 || cfg.ChunkSize > maxChunkSize:
		return nil, fmt.Errorf("clamav: chunk size %d is outside 1..%d", cfg.ChunkSize, maxChunkSize)
	case cfg.ChunkSize == 0:
		c.chunkSize = DefaultChunkSize
	}
	if c.dial == nil {
		var d net.Dialer
		c.dial = d.DialContext
	}
	return c, nil
}

// ParseAddress splits a clamd address of the form "tcp:HOST:PORT" or
// "unix:/absolute/path" into the network and address that net.Dial takes.
// An IPv6 host is written in brackets: "tcp:[::1]:3310".
func ParseAddress(s string) (network, addr string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("clamav: address %q: %s (want \"tcp:HOST:PORT\" or \"unix:/path\")", s, why)
	}
	network, addr, ok := strings.Cut(s, ":")
	if !ok {
		return bad("no network prefix")
	}
	switch network {
	case "tcp":
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return bad("not HOST:PORT")
		}
		if host == "" {
			return bad("empty host")
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return bad(fmt.Sprintf("port %q is not a number in 1..65535", port))
		}
		return "tcp", addr, nil
	case "unix":
		if addr == "" {
			return bad("empty socket path")
		}
		if !strings.HasPrefix(addr, "/") {
			// A relative path would depend on the working directory of
			// whoever starts mxgate.
			return bad("socket path is not absolute")
		}
		return "unix", addr, nil
	default:
		return bad(fmt.Sprintf("unknown network %q", network))
	}
}

// Scan streams r to clamd with INSTREAM and returns its verdict. r is read
// chunk by chunk (Config.ChunkSize) and never held whole in memory; pass the
// spooled message file. Any error is a *ScanError: the message was not
// scanned, whatever part of it clamd saw.
func (c *Client) Scan(ctx context.Context, r io.Reader) (res Result, err error) {
	start := time.Now()
	defer func() { observeScan(time.Since(start), res, err) }()

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.acquire(ctx); err != nil {
		return Result{}, err
	}
	defer c.release()
	conn, err := c.connect(ctx)
	if err != nil {
		return Result{}, err
	}
	defer conn.Close()

	if err := c.send(ctx, conn, r); err != nil {
		return Result{}, err
	}
	reply, err := readReply(ctx, conn)
	if err != nil {
		return Result{}, err
	}
	return parseScanReply(reply)
}

// send writes the INSTREAM command, the chunks of r and the terminating
// zero-length chunk.
func (c *Client) send(ctx context.Context, conn net.Conn, r io.Reader) error {
	if _, err := conn.Write([]byte("zINSTREAM\x00")); err != nil {
		return c.sendFailed(ctx, conn, err)
	}
	// One buffer holds a chunk's 4-byte length and its data so that each
	// chunk is a single write.
	buf := make([]byte, 4+c.chunkSize)
	for {
		n, rerr := io.ReadFull(r, buf[4:])
		if n > 0 {
			binary.BigEndian.PutUint32(buf[:4], uint32(n))
			if _, err := conn.Write(buf[:4+n]); err != nil {
				return c.sendFailed(ctx, conn, err)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return &ScanError{Kind: KindSource, Op: "read message", Err: rerr}
		}
	}
	if _, err := conn.Write([]byte{0, 0, 0, 0}); err != nil {
		return c.sendFailed(ctx, conn, err)
	}
	return nil
}

// sendFailed explains a failed write. clamd closes the connection as soon
// as the stream passes StreamMaxLength, after writing its reply, while we
// are still sending: the write fails with a broken pipe or a reset, and the
// reason is in the reply waiting in our receive buffer. Read it if it is
// there before blaming the connection.
func (c *Client) sendFailed(ctx context.Context, conn net.Conn, werr error) error {
	if e := classify(ctx, "send", werr); e.Kind == KindTimeout {
		return e
	}
	reply, err := readReply(ctx, conn)
	if err != nil {
		return &ScanError{Kind: KindUnavailable, Op: "send", Err: werr}
	}
	_, perr := parseScanReply(reply)
	if perr != nil {
		return perr
	}
	// A verdict before the end of the stream cannot be a verdict on the
	// whole message.
	return &ScanError{Kind: KindProtocol, Op: "send", Reply: reply, Err: fmt.Errorf("verdict before the end of the stream, then %w", werr)}
}

// parseScanReply turns clamd's reply to INSTREAM into a verdict or an error.
func parseScanReply(reply string) (Result, error) {
	const prefix, found = "stream: ", " FOUND"
	switch {
	case reply == "stream: OK":
		return Result{Raw: reply}, nil
	case strings.HasPrefix(reply, prefix) && strings.HasSuffix(reply, found) && len(reply) > len(prefix)+len(found):
		name := strings.TrimSuffix(strings.TrimPrefix(reply, prefix), found)
		if strings.TrimSpace(name) != name {
			break
		}
		return Result{Infected: true, Virus: name, Raw: reply}, nil
	case reply == "INSTREAM size limit exceeded. ERROR":
		return Result{}, &ScanError{Kind: KindSizeLimit, Op: "reply", Reply: reply}
	case reply == "UNKNOWN COMMAND":
		// Not clamd's failure: we sent something it does not speak.
		return Result{}, &ScanError{Kind: KindProtocol, Op: "reply", Reply: reply}
	case strings.HasSuffix(reply, " ERROR"):
		return Result{}, &ScanError{Kind: KindUnavailable, Op: "reply", Reply: reply}
	}
	return Result{}, &ScanError{Kind: KindProtocol, Op: "reply", Reply: reply, Err: errors.New("unrecognised reply")}
}

// Ping checks that clamd answers (zPING → PONG). It does not wait for a pool
// slot: a readiness probe must not queue behind long scans, and a ping costs
// clamd nothing.
func (c *Client) Ping(ctx context.Context) error {
	reply, err := c.command(ctx, "zPING\x00")
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return &ScanError{Kind: KindProtocol, Op: "reply", Reply: reply, Err: errors.New("want PONG")}
	}
	return nil
}

// Version returns clamd's version line, e.g. "ClamAV 1.4.6/27470/Mon Nov 23
// 09:00:00 2026" (engine/database version/database date; only the engine
// when no official database is loaded). Like Ping, it takes no pool slot.
func (c *Client) Version(ctx context.Context) (string, error) {
	reply, err := c.command(ctx, "zVERSION\x00")
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(reply, "ClamAV ") {
		return "", &ScanError{Kind: KindProtocol, Op: "reply", Reply: reply, Err: errors.New("want \"ClamAV ...\"")}
	}
	return reply, nil
}

// command sends a command that has no payload and returns its reply.
func (c *Client) command(ctx context.Context, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	conn, err := c.connect(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(cmd)); err != nil {
		return "", classify(ctx, "send", err)
	}
	return readReply(ctx, conn)
}

func (c *Client) acquire(ctx context.Context) error {
	select {
	case c.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return &ScanError{Kind: KindTimeout, Op: "wait for slot", Err: context.Cause(ctx)}
	}
}

func (c *Client) release() { <-c.slots }

// connect dials clamd and ties the connection's deadline to ctx: the
// deadline of ctx (there always is one, Config.Timeout) is set on the
// connection, and a cancellation of ctx unblocks any read or write.
func (c *Client) connect(ctx context.Context) (net.Conn, error) {
	conn, err := c.dial(ctx, c.network, c.addr)
	if err != nil {
		return nil, classify(ctx, "dial", err)
	}
	if d, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(d); err != nil {
			conn.Close()
			return nil, classify(ctx, "dial", err)
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	return &ctxConn{Conn: conn, stop: stop}, nil
}

// ctxConn stops the cancellation hook of connect when closed.
type ctxConn struct {
	net.Conn
	stop func() bool
}

func (c *ctxConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// readReply reads one NUL-terminated reply. It reads in small pieces and
// stops at the NUL; clamd may deliver a reply in any number of segments.
func readReply(ctx context.Context, conn net.Conn) (string, error) {
	var reply []byte
	buf := make([]byte, 256)
	for {
		n, err := conn.Read(buf)
		reply = append(reply, buf[:n]...)
		if i := bytes.IndexByte(reply, 0); i >= 0 {
			return string(reply[:i]), nil
		}
		if len(reply) > maxReplyLen {
			return "", &ScanError{Kind: KindProtocol, Op: "reply", Reply: string(reply[:64]) + "...", Err: fmt.Errorf("no NUL in the first %d bytes", maxReplyLen)}
		}
		if err != nil {
			if err == io.EOF && len(reply) > 0 {
				return "", &ScanError{Kind: KindProtocol, Op: "reply", Reply: string(reply), Err: errors.New("connection closed before the NUL ending the reply")}
			}
			return "", classify(ctx, "reply", err)
		}
	}
}

// classify turns a dial, read or write error into a ScanError: timeout when
// the context ended or a deadline passed, unavailable otherwise (refused,
// reset, closed).
func classify(ctx context.Context, op string, err error) *ScanError {
	if ctx.Err() != nil {
		return &ScanError{Kind: KindTimeout, Op: op, Err: fmt.Errorf("%w (%w)", context.Cause(ctx), err)}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		// The only deadline on the connection is the context's, whose own
		// timer may not have fired yet.
		return &ScanError{Kind: KindTimeout, Op: op, Err: fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)}
	}
	return &ScanError{Kind: KindUnavailable, Op: op, Err: err}
}
