// Package gateway holds the node's SMTP listeners and their per-session
// policy (relay domains, limits, line-ending rules), and the admin HTTP
// listener. Accepted messages go to the smarthost queue, which makes them
// durable before the client hears 250.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/smarthost"
)

// Listener names, used as metric labels and in the mail log.
const (
	ListenerInbound = "inbound"
	ListenerRelay   = "relay"
)

// Config is what the gateway needs from the node's configuration.
type Config struct {
	Hostname         string
	Domains          []string // relay domains, lower case
	MyNetworks       []netip.Prefix
	TLS              *tls.Config // nil: no STARTTLS
	MaxMessageBytes  int64
	MaxRecipients    int
	MaxConnections   int
	PerIPConnections int
	CommandTimeout   time.Duration
	DataTimeout      time.Duration
	// ConnLimitExempt lists the client networks that per_ip_connections
	// does not apply to (by default mynetworks: the backends send all
	// their outgoing mail from a few addresses).
	ConnLimitExempt []netip.Prefix
	// HardErrorLimit ends a session with 421 after this many 5xx
	// replies; JunkCommandLimit after this many NOOP, RSET, VRFY, HELP
	// or ETRN commands. Both counters restart when a message is accepted.
	HardErrorLimit   int
	JunkCommandLimit int
	Logger           *slog.Logger
}

// Relay says who may send to domains other than the relay domains on a
// listener.
type Relay int

const (
	// RelayTrusted: clients in mynetworks.
	RelayTrusted Relay = iota
)

// Policy is what one listener allows and which checks it runs. Submission
// (AUTH required, relaying for authenticated users) and outbound signing
// join it with the listeners that need them.
type Policy struct {
	Name string // the listener's name: metric label and mail log
	// OnlyMyNetworks refuses, at connect, every client outside mynetworks
	// (the relay listener is for the backends only).
	OnlyMyNetworks bool
	Relay          Relay
	// Pipeline holds the listener's checks; nil runs none.
	Pipeline *filter.Pipeline
	// Quarantine keeps what the pipeline holds back; nil delivers
	// quarantine-level mail tagged (see quarantine.go).
	Quarantine Quarantine
}

// mayRelay tells whether the client may send to any domain.
func (p *Policy) mayRelay(c *filter.Conn) bool {
	switch p.Relay {
	case RelayTrusted:
		return c.Trusted
	}
	return false
}

// Server runs the SMTP listeners of one node.
type Server struct {
	cfg     Config
	queue   *smarthost.Queue
	domains map[string]bool
	limiter *connLimiter
	log     *slog.Logger

	mu       sync.Mutex
	smtps    []*smtp.Server
	lns      []net.Listener
	draining atomic.Bool
	bound    atomic.Bool

	// base is the parent of every session's context; kill ends it when
	// the node stops for good.
	base context.Context
	kill context.CancelFunc
}

// New makes a server that spools accepted mail into q.
func New(cfg Config, q *smarthost.Queue) *Server {
	base, kill := context.WithCancel(context.Background())
	s := &Server{
		base:    base,
		kill:    kill,
		cfg:     cfg,
		queue:   q,
		domains: map[string]bool{},
		limiter: newConnLimiter(cfg.MaxConnections, cfg.PerIPConnections, cfg.ConnLimitExempt),
		log:     cfg.Logger,
	}
	for _, d := range cfg.Domains {
		s.domains[strings.ToLower(d)] = true
	}
	return s
}

// Listen binds a listener now, so that a port already in use is an error
// at start-up, before the node says it is ready.
func (s *Server) Listen(p Policy, addr string) error {
	name := p.Name
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s on %s: %w", name, addr, err)
	}
	var allow func(netip.Addr) bool
	if p.OnlyMyNetworks {
		// Nobody else may even start a session there.
		allow = s.inMyNetworks
	}
	ll := &limitListener{Listener: ln, name: name, hostname: s.cfg.Hostname, limiter: s.limiter, allow: allow, log: s.log, srv: s}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return s.newSession(&p, c)
	}))
	srv.Domain = s.cfg.Hostname
	srv.MaxMessageBytes = s.cfg.MaxMessageBytes
	srv.MaxRecipients = 0 // enforced in Rcpt, so the refusal is counted and logged
	srv.ReadTimeout = s.cfg.CommandTimeout
	srv.WriteTimeout = s.cfg.CommandTimeout
	srv.EnableSMTPUTF8 = true
	// The guard under each connection (guard.go) does STARTTLS and bounds
	// command lines; go-smtp sees the plain text and no line limit, so
	// that message data may hold lines of any length.
	srv.TLSConfig = nil
	srv.MaxLineLength = 0
	srv.ErrorLog = log.New(slogWriter{s.log, name}, "", 0)
	s.mu.Lock()
	s.smtps = append(s.smtps, srv)
	s.lns = append(s.lns, ll)
	s.mu.Unlock()
	s.bound.Store(true)
	return nil
}

// Addrs returns the bound addresses, in Listen order.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	for _, ln := range s.lns {
		out = append(out, ln.Addr())
	}
	return out
}

// Serve runs every bound listener until Shutdown. It returns the first
// listener error other than a shutdown.
func (s *Server) Serve() error {
	s.mu.Lock()
	smtps, lns := s.smtps, s.lns
	s.mu.Unlock()
	errc := make(chan error, len(smtps))
	for i := range smtps {
		go func(srv *smtp.Server, ln net.Listener) {
			err := srv.Serve(ln)
			if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
				err = nil
			}
			errc <- err
		}(smtps[i], lns[i])
	}
	var first error
	for range smtps {
		if err := <-errc; err != nil && first == nil {
			first = err
			s.draining.Store(true)
			for _, srv := range smtps {
				_ = srv.Close()
			}
		}
	}
	return first
}

// Ready reports whether the listeners are bound and the server is not
// shutting down.
func (s *Server) Ready() bool {
	return s.bound.Load() && !s.draining.Load()
}

// Shutdown stops accepting connections, lets sessions in progress finish
// until ctx is done, then closes the rest. A message whose DATA is cut off
// was never answered 250, so the client still has it.
func (s *Server) Shutdown(ctx context.Context) {
	s.draining.Store(true)
	s.mu.Lock()
	smtps := s.smtps
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, srv := range smtps {
		wg.Add(1)
		go func(srv *smtp.Server) {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				// The grace is over: end the sessions' work, then
				// their connections.
				s.kill()
				_ = srv.Close()
			}
		}(srv)
	}
	wg.Wait()
	s.kill()
}

func (s *Server) newSession(p *Policy, c *smtp.Conn) (smtp.Session, error) {
	ip := remoteIP(c.Conn())
	g := guardOf(c)
	if g == nil {
		return nil, fmt.Errorf("gateway: connection %s without its guard", ip)
	}
	ctx, cancel := context.WithCancel(s.base)
	sess := &session{srv: s, policy: p, conn: c, guard: g, ip: ip, id: g.id, log: s.log, ctx: ctx, cancel: cancel,
		fconn: filter.Conn{ID: g.id, Listener: p.Name, IP: ip, Helo: c.Hostname(), TLS: g.TLSState() != nil, Trusted: s.inMyNetworks(ip)}}
	s.log.Info("session", "event", "connect", "session", sess.id, "listener", p.Name, "client_ip", ip.String(),
		"helo", truncate(c.Hostname()), "tls", g.TLSState() != nil)
	if d := p.Pipeline.Conn(ctx, &sess.fconn); d.Refused() {
		cancel()
		return nil, sess.refuseDecision(d)
	}
	metricSessions.WithLabelValues(p.Name).Inc()
	return sess, nil
}

func (s *Server) isLocalDomain(d string) bool { return s.domains[d] }

func (s *Server) inMyNetworks(ip netip.Addr) bool {
	for _, p := range s.cfg.MyNetworks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (s *Server) postmasterDomain() string {
	if len(s.cfg.Domains) > 0 {
		return s.cfg.Domains[0]
	}
	return s.cfg.Hostname
}

// slogWriter carries go-smtp's own error log lines (I/O errors, panics)
// into the structured log.
type slogWriter struct {
	log      *slog.Logger
	listener string
}

func (w slogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.HasPrefix(msg, "panic") {
		metricPanics.Inc()
		w.log.Error("smtp session panic", "event", "panic", "listener", w.listener, "detail", msg)
	} else {
		w.log.Debug("smtp connection error", "event", "conn_error", "listener", w.listener, "detail", msg)
	}
	return len(p), nil
}
