package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// connLimiter counts open SMTP connections, in total and per client
// address, across all listeners of the node.
type connLimiter struct {
	maxTotal, maxPerIP int
	exempt             []netip.Prefix // not subject to maxPerIP

	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int
}

func newConnLimiter(maxTotal, maxPerIP int, exempt []netip.Prefix) *connLimiter {
	return &connLimiter{maxTotal: maxTotal, maxPerIP: maxPerIP, exempt: exempt, perIP: map[netip.Addr]int{}}
}

func (l *connLimiter) isExempt(ip netip.Addr) bool {
	for _, p := range l.exempt {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// acquire takes a slot for ip, or returns the reason it cannot.
func (l *connLimiter) acquire(ip netip.Addr) reason {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.maxTotal {
		return reasonMaxConnections
	}
	if l.perIP[ip] >= l.maxPerIP && !l.isExempt(ip) {
		return reasonPerIPConnections
	}
	l.total++
	l.perIP[ip]++
	return ""
}

func (l *connLimiter) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if n := l.perIP[ip] - 1; n > 0 {
		l.perIP[ip] = n
	} else {
		delete(l.perIP, ip)
	}
}

// limitListener refuses connections over the limits, and on the relay
// listener those from outside mynetworks, with a reply written here, before
// go-smtp ever sees them (RFC 5321 §3.1: a server may refuse with a 554
// greeting or close with 421).
type limitListener struct {
	net.Listener
	name     string
	hostname string
	limiter  *connLimiter
	allow    func(netip.Addr) bool // nil: everyone
	log      *slog.Logger
	srv      *Server
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		if l.allow != nil && !l.allow(ip) {
			l.refuse(c, ip, reasonNotInMyNetworks)
			continue
		}
		if r := l.limiter.acquire(ip); r != "" {
			l.refuse(c, ip, r)
			continue
		}
		metricConnections.WithLabelValues(l.name, "accepted").Inc()
		open := metricConnectionsOpen.WithLabelValues(l.name)
		open.Inc()
		lc := &limitedConn{Conn: c, release: func() { l.limiter.release(ip); open.Dec() }}
		return newGuardConn(lc, l.srv, l.name, newConnID()), nil
	}
}

// refuse answers and closes without holding up the accept loop. The write
// is bounded by a short deadline, so a client that does not read cannot
// keep the goroutine.
func (l *limitListener) refuse(c net.Conn, ip netip.Addr, r reason) {
	metricConnections.WithLabelValues(l.name, string(r)).Inc()
	e := reply(r, "")
	l.log.Info("connection refused", "event", "refuse", "listener", l.name, "client_ip", ip.String(),
		"reason", string(r), "reply", fmt.Sprintf("%d %d.%d.%d", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2]))
	go func() {
		defer c.Close()
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "%d %d.%d.%d %s %s\r\n", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], l.hostname, e.Message)
	}()
}

// limitedConn gives its slot back exactly once, however often it is closed.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// newConnID makes the id that ties a connection's mail-log lines together.
func newConnID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func remoteIP(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
