package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Writes go through the leader. Node.Apply on the leader proposes the
// command itself; on a follower it forwards the command to the leader over
// the node port (tag connForward, see mux.go) and the leader proposes it.
// While there is no leader, or the leader changes under a write, Apply
// retries with jittered backoff until its context ends.
//
// A retried write may be applied twice (the first attempt can commit after
// its proposer lost leadership or its connection); every command today is
// an idempotent put or an expiry, so that is harmless.
//
// Forwarding protocol: requests and responses alternate on a connection,
// which the follower keeps in a small pool for the next write (with TLS a
// handshake per write would cost more than the write):
//
//	request:  timeout u64 ms (0: none) | length u32 | command
//	response: status u8 | length u32 | body
//
// status fwdOK carries the FSM's response as JSON, fwdRejected the text of
// the FSM's error (the command is invalid: not retried), fwdRetry the text
// of a transient failure (the node is not or no longer leader...), and
// fwdFailed any other error.
const (
	fwdOK       byte = 0
	fwdRejected byte = 1
	fwdRetry    byte = 2
	fwdFailed   byte = 3
)

const (
	// maxForwardSize bounds a forwarded command (and a response body).
	maxForwardSize = 64 << 20
	// defaultForwardTimeout applies to a forwarded write whose proposer
	// gave no deadline.
	defaultForwardTimeout = 30 * time.Second
	// chunkLifetime is how long a chunked command's partial parts are kept
	// (see SplitCommand).
	chunkLifetime = time.Hour

	// noLeaderFastFail: once a node has been without a leader this long,
	// writes stop waiting for one. An election takes a second or two;
	// past that the cluster has lost quorum, and every caller waiting out
	// its deadline (an SMTP session greylisting) only slows mail down
	// before it fails open or answers 451.
	noLeaderFastFail = 3 * time.Second

	retryMin = 10 * time.Millisecond
	retryMax = 500 * time.Millisecond
)

var (
	// ErrNoLeader is the transient error while no leader is known.
	ErrNoLeader = errors.New("cluster: no leader")
	// ErrNodeShutdown is returned by Apply on a node that was shut down.
	ErrNodeShutdown = errors.New("cluster: node shut down")
)

// rejectedError is an FSM rejection relayed by the leader.
type rejectedError struct{ msg string }

func (e rejectedError) Error() string        { return e.msg }
func (e rejectedError) Is(target error) bool { return target == ErrInvalidCommand }

// retryableError marks a failure worth another attempt.
type retryableError struct{ err error }

func (e retryableError) Error() string { return e.err.Error() }
func (e retryableError) Unwrap() error { return e.err }

func isRetryable(err error) bool {
	var r retryableError
	return errors.As(err, &r) ||
		errors.Is(err, ErrNoLeader) ||
		errors.Is(err, raft.ErrNotLeader) ||
		errors.Is(err, raft.ErrLeadershipLost) ||
		errors.Is(err, raft.ErrLeadershipTransferInProgress) ||
		errors.Is(err, raft.ErrEnqueueTimeout)
}

// Apply commits cmd through the leader and returns the FSM's response for
// it (an error response of the FSM is returned as the error). It blocks
// until the command is applied on the leader or ctx ends: without quorum
// it fails when ctx does, so callers must give it a deadline, or at once
// with ErrNoLeader once the node has known no leader for noLeaderFastFail.
func (n *Node) Apply(ctx context.Context, cmd []byte) (any, error) {
	if len(cmd) == 0 {
		return nil, errors.New("cluster: empty command")
	}
	if cmd[0] == opRemoveServer {
		return nil, errors.New("cluster: membership requests are not commands")
	}
	if len(cmd) > maxForwardSize {
		return nil, fmt.Errorf("cluster: command of %d bytes exceeds %d", len(cmd), maxForwardSize)
	}
	start := time.Now()
	backoff := retryMin
	for {
		resp, err := n.applyOnce(ctx, cmd)
		// Quorum lost rather than an election running: fail now.
		quorumLost := errors.Is(err, ErrNoLeader) && n.leaderlessFor() > noLeaderFastFail
		if quorumLost {
			err = fmt.Errorf("%w for more than %v", ErrNoLeader, noLeaderFastFail)
		}
		if err == nil || quorumLost || !isRetryable(err) {
			if err == nil {
				metricApplyDuration.Observe(time.Since(start).Seconds())
			} else {
				metricApplyErrors.Inc()
			}
			return resp, err
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, retryMax)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			metricApplyErrors.Inc()
			return nil, fmt.Errorf("cluster: apply: %w (last attempt: %v)", ctx.Err(), err)
		case <-n.ctx.Done():
			t.Stop()
			return nil, ErrNodeShutdown
		case <-t.C:
		}
	}
}

func (n *Node) applyOnce(ctx context.Context, cmd []byte) (any, error) {
	if err := n.ctx.Err(); err != nil {
		return nil, ErrNodeShutdown
	}
	if n.raft.State() == raft.Leader {
		return n.applyLocal(ctx, cmd)
	}
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return nil, ErrNoLeader
	}
	return n.forward(ctx, string(addr), cmd)
}

// applyLocal proposes cmd on this node, chunked when large, and waits for
// the last part's response.
func (n *Node) applyLocal(ctx context.Context, cmd []byte) (any, error) {
	parts, err := SplitCommand(cmd, NewChunkID(), time.Now().Add(chunkLifetime))
	if err != nil {
		return nil, err
	}
	var resp any
	for _, p := range parts {
		var timeout time.Duration // enqueue timeout; 0 waits
		if d, ok := ctx.Deadline(); ok {
			if timeout = time.Until(d); timeout <= 0 {
				return nil, ctx.Err()
			}
		}
		f := n.raft.Apply(p, timeout)
		done := make(chan error, 1)
		go func() { done <- f.Error() }()
		select {
		case err := <-done:
			if err != nil {
				return nil, err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		resp = f.Response()
		if err, ok := resp.(error); ok {
			return nil, err
		}
	}
	return resp, nil
}

// forward sends cmd to the leader at addr and returns its answer.
func (n *Node) forward(ctx context.Context, addr string, cmd []byte) (any, error) {
	deadline, hasDeadline := ctx.Deadline()
	if !hasDeadline {
		deadline = time.Now().Add(defaultForwardTimeout)
	}
	c, err := n.fwdPool.get(addr, func() (net.Conn, error) {
		return n.mux.dialTagged(addr, connForward, deadline)
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, retryableError{fmt.Errorf("cluster: forwarding to %s: %w", addr, err)}
	}
	reusable := false
	defer func() {
		if reusable {
			n.fwdPool.put(addr, c)
		} else {
			c.Close()
		}
	}()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	_ = c.SetDeadline(deadline)

	var ms uint64
	if hasDeadline {
		ms = uint64(max(time.Until(deadline).Milliseconds(), 1))
	}
	req := binary.BigEndian.AppendUint64(nil, ms)
	req = binary.BigEndian.AppendUint32(req, uint32(len(cmd)))
	if _, err := c.Write(append(req, cmd...)); err != nil {
		return nil, n.forwardIOError(ctx, addr, err)
	}
	var hdr [5]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return nil, n.forwardIOError(ctx, addr, err)
	}
	body, err := readBody(c, binary.BigEndian.Uint32(hdr[1:]))
	if err != nil {
		return nil, n.forwardIOError(ctx, addr, err)
	}
	reusable = stop() && c.SetDeadline(time.Time{}) == nil
	switch hdr[0] {
	case fwdOK:
		return decodeResponse(cmd, body)
	case fwdRejected:
		return nil, rejectedError{string(body)}
	case fwdRetry:
		return nil, retryableError{fmt.Errorf("cluster: leader %s: %s", addr, body)}
	default:
		return nil, fmt.Errorf("cluster: leader %s: %s", addr, body)
	}
}

func (n *Node) forwardIOError(ctx context.Context, addr string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return retryableError{fmt.Errorf("cluster: forwarding to %s: %w", addr, err)}
}

func readBody(r io.Reader, size uint32) ([]byte, error) {
	if size > maxForwardSize {
		return nil, fmt.Errorf("cluster: forwarded message of %d bytes exceeds %d", size, maxForwardSize)
	}
	b := make([]byte, size)
	_, err := io.ReadFull(r, b)
	return b, err
}

// decodeResponse turns the JSON of a forwarded response back into the type
// the FSM returns for the command.
func decodeResponse(cmd, body []byte) (any, error) {
	if string(body) == "null" {
		return nil, nil
	}
	if CommandType(cmd[0])&^IgnorableFlag == CmdExpire {
		var r ExpireResult
		if err := json.Unmarshal(body, &r); err != nil {
			return nil, fmt.Errorf("cluster: forwarded expire response: %w", err)
		}
		// A leader of an earlier version answers with a struct's field
		// names ("Triplets"); ours are lower case, and JSON field
		// matching made the earlier version read ours.
		for k, v := range r {
			if l := strings.ToLower(k); l != k {
				delete(r, k)
				r[l] += v
			}
		}
		return r, nil
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("cluster: forwarded response: %w", err)
	}
	return v, nil
}

// serveForward serves forwarded writes on the leader, one after another,
// until the follower closes the connection or leaves it idle.
func (n *Node) serveForward(c net.Conn) {
	select {
	case <-n.ready:
	case <-n.ctx.Done():
		return
	}
	for {
		_ = c.SetReadDeadline(time.Now().Add(forwardIdleTimeout))
		var hdr [12]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(transportTimeout))
		cmd, err := readBody(c, binary.BigEndian.Uint32(hdr[8:]))
		if err != nil || len(cmd) == 0 {
			return
		}
		timeout := defaultForwardTimeout
		if ms := binary.BigEndian.Uint64(hdr[:8]); ms > 0 {
			timeout = min(time.Duration(ms)*time.Millisecond, defaultForwardTimeout)
		}
		status, body := n.serveOne(cmd, timeout)
		out := append([]byte{status}, binary.BigEndian.AppendUint32(nil, uint32(len(body)))...)
		_ = c.SetWriteDeadline(time.Now().Add(transportTimeout))
		if _, err := c.Write(append(out, body...)); err != nil {
			return
		}
	}
}

func (n *Node) serveOne(cmd []byte, timeout time.Duration) (status byte, body []byte) {
	ctx, cancel := context.WithTimeout(n.ctx, timeout)
	defer cancel()
	if n.raft.State() != raft.Leader {
		return fwdRetry, []byte(raft.ErrNotLeader.Error())
	}
	var resp any
	var err error
	if cmd[0] == opRemoveServer {
		err = n.RemoveServer(string(cmd[1:]))
	} else {
		resp, err = n.applyLocal(ctx, cmd)
	}
	if err != nil {
		switch {
		case errors.Is(err, ErrInvalidCommand):
			status = fwdRejected
		case isRetryable(err):
			status = fwdRetry
		default:
			status = fwdFailed
		}
		return status, []byte(err.Error())
	}
	b, err := json.Marshal(resp)
	if err != nil {
		return fwdFailed, []byte(err.Error())
	}
	return fwdOK, b
}

// opRemoveServer is a forwarded request that is not a Raft command: the
// leader removes the server named by the rest of the request from the
// configuration (mxgate cluster remove on a follower). The byte is no
// CommandType: Apply refuses it, so it can never reach the log.
const opRemoveServer byte = 0x7f

// RemoveServerViaLeader removes a server from the Raft configuration,
// forwarding the request when this node is not the leader.
func (n *Node) RemoveServerViaLeader(ctx context.Context, id string) error {
	backoff := retryMin
	for {
		var err error
		if n.raft.State() == raft.Leader {
			err = n.RemoveServer(id)
		} else if addr, _ := n.raft.LeaderWithID(); addr == "" {
			err = ErrNoLeader
		} else {
			_, err = n.forward(ctx, string(addr), append([]byte{opRemoveServer}, id...))
		}
		if err == nil || !isRetryable(err) {
			return err
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, retryMax)
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: remove %s: %w (last attempt: %v)", id, ctx.Err(), err)
		case <-time.After(wait):
		}
	}
}

// connPool keeps idle forwarding connections per leader address. A pooled
// connection is dropped after poolIdle, well before the leader's
// forwardIdleTimeout closes it, so a write rarely meets a dead one (and
// when it does, the error is retryable: the request never reached Raft).
type connPool struct {
	mu     sync.Mutex
	idle   map[string][]pooledConn
	closed bool
}

type pooledConn struct {
	net.Conn
	since time.Time
}

const (
	// poolMaxIdle is about the number of SMTP sessions of one node
	// writing at the same time: below that, a busy follower keeps dialing
	// (and handshaking TLS) connections it then closes.
	poolMaxIdle        = 64
	poolIdle           = 30 * time.Second
	forwardIdleTimeout = 2 * time.Minute
)

func (p *connPool) get(addr string, dial func() (net.Conn, error)) (net.Conn, error) {
	p.mu.Lock()
	for len(p.idle[addr]) > 0 {
		list := p.idle[addr]
		pc := list[len(list)-1]
		p.idle[addr] = list[:len(list)-1]
		if time.Since(pc.since) < poolIdle {
			p.mu.Unlock()
			return pc.Conn, nil
		}
		pc.Close()
	}
	p.mu.Unlock()
	return dial()
}

func (p *connPool) put(addr string, c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[addr]) >= poolMaxIdle {
		c.Close()
		return
	}
	if p.idle == nil {
		p.idle = make(map[string][]pooledConn)
	}
	p.idle[addr] = append(p.idle[addr], pooledConn{c, time.Now()})
}

func (p *connPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, list := range p.idle {
		for _, pc := range list {
			pc.Close()
		}
	}
	p.idle = nil
}
