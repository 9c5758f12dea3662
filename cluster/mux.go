package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// One TCP port per node carries both Raft and write forwarding, as in
// Consul: the dialer's first byte says which protocol follows. A follower
// therefore forwards to the leader's Raft address, which Raft itself tells
// it, and no second address needs to be configured or gossiped.
//
// With TLS configured (always, outside tests) the TLS handshake comes
// first, both sides presenting a certificate of the cluster CA, and the
// protocol byte is the first byte inside TLS: nothing of Raft or
// forwarding ever crosses the network in clear.
const (
	connRaft    byte = 'R'
	connForward byte = 'F'
)

// tagReadTimeout bounds how long an accepted connection may take to
// complete its TLS handshake and send its protocol byte.
const tagReadTimeout = 5 * time.Second

var errMuxClosed = errors.New("cluster: listener closed")

// mux accepts on the node's port and hands Raft connections to Raft (it is
// Raft's StreamLayer) and forwarding connections to handleForward.
type mux struct {
	ln            net.Listener
	advertise     net.Addr
	serverTLS     *tls.Config // nil: plain TCP
	clientTLS     *tls.Config
	raftConns     chan net.Conn
	handleForward func(net.Conn)

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
	mu        sync.Mutex
	open      map[net.Conn]struct{} // forwarding connections being served
}

var _ raft.StreamLayer = (*mux)(nil)

func newMux(ln net.Listener, advertise net.Addr, serverTLS, clientTLS *tls.Config, handleForward func(net.Conn)) *mux {
	m := &mux{
		ln:            ln,
		advertise:     advertise,
		serverTLS:     serverTLS,
		clientTLS:     clientTLS,
		raftConns:     make(chan net.Conn),
		handleForward: handleForward,
		done:          make(chan struct{}),
		open:          make(map[net.Conn]struct{}),
	}
	m.wg.Add(1)
	go m.acceptLoop()
	return m
}

func (m *mux) acceptLoop() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		m.wg.Add(1)
		go m.route(c)
	}
}

func (m *mux) route(c net.Conn) {
	defer m.wg.Done()
	var tag [1]byte
	_ = c.SetDeadline(time.Now().Add(tagReadTimeout))
	if m.serverTLS != nil {
		tc := tls.Server(c, m.serverTLS)
		if err := tc.Handshake(); err != nil {
			metricTLSHandshakeErrors.Inc()
			c.Close()
			return
		}
		c = tc
	}
	if _, err := io.ReadFull(c, tag[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	switch tag[0] {
	case connRaft:
		select {
		case m.raftConns <- c:
		case <-m.done:
			c.Close()
		}
	case connForward:
		if !m.track(c) {
			c.Close()
			return
		}
		defer m.untrack(c)
		m.handleForward(c)
	default:
		c.Close()
	}
}

func (m *mux) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.done:
		return false
	default:
	}
	m.open[c] = struct{}{}
	return true
}

func (m *mux) untrack(c net.Conn) {
	m.mu.Lock()
	delete(m.open, c)
	m.mu.Unlock()
	c.Close()
}

// Accept implements net.Listener for Raft: the Raft connections only.
func (m *mux) Accept() (net.Conn, error) {
	select {
	case c := <-m.raftConns:
		return c, nil
	case <-m.done:
		return nil, errMuxClosed
	}
}

// Close stops accepting and closes the forwarding connections being
// served. Raft calls it on shutdown through its transport; Node.Shutdown
// calls it again and waits for the handlers.
func (m *mux) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		close(m.done)
		for c := range m.open {
			c.Close()
		}
		m.mu.Unlock()
		m.ln.Close()
	})
	return nil
}

func (m *mux) wait() { m.wg.Wait() }

// Addr implements net.Listener: the advertised address, which Raft puts in
// the configuration.
func (m *mux) Addr() net.Addr { return m.advertise }

// Dial implements raft.StreamLayer.
func (m *mux) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return m.dialTagged(string(addr), connRaft, time.Now().Add(timeout))
}

func (m *mux) dialTagged(addr string, tag byte, deadline time.Time) (net.Conn, error) {
	c, err := m.dial(addr, deadline)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{tag}); err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster: dialing %s: %w", addr, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// dial connects to a node port and, with TLS, completes the handshake;
// the connection keeps deadline until the caller clears it.
func (m *mux) dial(addr string, deadline time.Time) (net.Conn, error) {
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(deadline)
	if m.clientTLS == nil {
		return c, nil
	}
	tc := tls.Client(c, m.clientTLS)
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster: TLS with %s: %w", addr, err)
	}
	return tc, nil
}

// probe checks that the node at addr answers on its node port and, with
// TLS, presents a certificate of the cluster CA issued for name (its
// common name). The connection is then closed without a protocol byte.
func (m *mux) probe(addr, name string) error {
	c, err := m.dial(addr, time.Now().Add(probeTimeout))
	if err != nil {
		return err
	}
	defer c.Close()
	if tc, ok := c.(*tls.Conn); ok {
		if cn := tc.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != name {
			return fmt.Errorf("its certificate is issued for %q", cn)
		}
	}
	return nil
}

const probeTimeout = 3 * time.Second
