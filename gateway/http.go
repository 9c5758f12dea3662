package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ReadinessProbe is one condition of the node's readiness (/readyz):
// Ready returns nil while it holds, else why not.
type ReadinessProbe struct {
	Name  string
	Ready func() error
}

// Access says who may use a route of the AdminMux.
type Access struct {
	admin  bool
	signed bool
	what   string // the operation, named in the refusal
}

// Anyone may use the route who can reach the HTTP listener, as /metrics:
// for reads only (GET and HEAD routes).
var Anyone = Access{}

// SignedUser routes are open to anyone, with any method, because the
// handler itself checks a credential the request carries: a signed,
// expiring token in the URL or the form (the quarantine's user page,
// whose links are mailed to recipients). Such a handler must refuse every
// request whose token it has not verified, before reading or changing
// anything.
var SignedUser = Access{signed: true}

// AdminOnly routes need the admin token (admin.token_file) as a bearer
// token, or, when none is configured, a request from loopback (README,
// "Administration"). what names the operation in the refusal, e.g.
// "removing a node".
func AdminOnly(what string) Access { return Access{admin: true, what: what} }

// AdminMux is the node's one HTTP handler: /metrics, /healthz and /readyz,
// and the routes registered with HandleAPI (the cluster API and the like),
// each behind its Access.
type AdminMux struct {
	mux   *http.ServeMux
	token string
}

// NewAdminMux serves GET /metrics, /healthz (the process is alive) and
// /readyz (every probe passes: a load balancer or Kubernetes sends mail
// here only then). adminToken is the token of AdminOnly routes; empty,
// they are open to loopback only.
func NewAdminMux(adminToken string, probes []ReadinessProbe) *AdminMux {
	m := &AdminMux{mux: http.NewServeMux(), token: adminToken}
	m.mux.Handle("GET /metrics", promhttp.Handler())
	m.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	m.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		var failed []string
		for _, p := range probes {
			if err := p.Ready(); err != nil {
				failed = append(failed, p.Name+": "+err.Error())
			}
		}
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready")
			fmt.Fprintln(w, strings.Join(failed, "\n"))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return m
}

// HandleAPI registers h for pattern, a net/http pattern with its method
// ("GET /api/v1/cluster/members", "POST /api/v1/cluster/remove"). Every
// route that changes the node must be AdminOnly, or SignedUser when its
// handler checks a signed token itself: a route open to Anyone
// that is not GET or HEAD is a programming error, and panics as
// http.ServeMux does for a bad pattern.
func (m *AdminMux) HandleAPI(pattern string, h http.Handler, a Access) {
	if a.signed {
		m.mux.Handle(pattern, h)
		return
	}
	if !a.admin {
		method, _, ok := strings.Cut(pattern, " ")
		if !ok || (method != http.MethodGet && method != http.MethodHead) {
			panic(fmt.Sprintf("gateway: route %q is open to anyone but not GET or HEAD: make it AdminOnly", pattern))
		}
		m.mux.Handle(pattern, h)
		return
	}
	m.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !m.adminAllowed(r) {
			WriteJSON(w, http.StatusForbidden, APIError{Error: a.what + " needs the admin token (admin.token_file), or a request from loopback when none is configured"})
			return
		}
		h.ServeHTTP(w, r)
	}))
}

func (m *AdminMux) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.mux.ServeHTTP(w, r) }

// adminAllowed is the one admin check: the bearer token when one is
// configured, else a client on loopback.
func (m *AdminMux) adminAllowed(r *http.Request) bool {
	if m.token == "" {
		return IsLoopback(r)
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(m.token)) == 1
}

// AdminLogin is the check of a login form (the admin page): token is
// the admin token, compared in constant time; with none configured, only
// a request from loopback passes, whatever token holds.
func (m *AdminMux) AdminLogin(r *http.Request, token string) bool {
	if m.token == "" {
		return IsLoopback(r)
	}
	return subtle.ConstantTimeCompare([]byte(token), []byte(m.token)) == 1
}

// AdminTokenSet reports whether an admin token is configured; without
// one, admin routes and pages are open to loopback only.
func (m *AdminMux) AdminTokenSet() bool { return m.token != "" }

// IsLoopback reports whether r comes from a loopback address.
func IsLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// APIError is the JSON body of every API error.
type APIError struct {
	Error string `json:"error"`
}

// WriteJSON answers status with v as indented JSON, as every API route
// does.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

var (
	metricHTTPConnections = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_http_connections_total",
		Help: "HTTP connections by result: accepted, or refused (closed at once: every slot busy with a request).",
	}, []string{"result"})

	metricHTTPEvicted = promauto.NewCounter(prometheus.CounterOpts{
		Name: "mxgate_http_idle_evictions_total",
		Help: "Idle HTTP connections closed to make room for a new one at the connection cap.",
	})

	metricHTTPOpen = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "mxgate_http_connections_open",
		Help: "HTTP connections open now.",
	})
)

// HTTPOptions bound what HTTP clients may hold: connections share the
// process's file descriptors with SMTP, so none may stay forever.
type HTTPOptions struct {
	// MaxConns caps open connections. At the cap, a new connection
	// takes the place of the connection idle longest (no request in
	// progress: new, or kept alive between requests); when every
	// connection is in a request, the new one is closed at once.
	MaxConns int
	// ReadHeaderTimeout bounds reading a request's header, ReadTimeout
	// the whole request, WriteTimeout the handler and its response,
	// IdleTimeout a kept-alive connection between requests.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	Logger            *slog.Logger
}

// DefaultHTTPOptions are the production limits. WriteTimeout leaves room
// for the slowest handler: a cluster change waits up to 30 s for Raft.
func DefaultHTTPOptions() HTTPOptions {
	return HTTPOptions{
		MaxConns:          DefaultHTTPConnections,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
}

// HTTPServer is the node's HTTP listener with its limits.
type HTTPServer struct {
	srv *http.Server
	ln  *httpListener
}

// NewHTTPServer serves h on ln within o's limits; the server's own error
// log goes to o.Logger.
func NewHTTPServer(ln net.Listener, h http.Handler, o HTTPOptions) *HTTPServer {
	if o.MaxConns < 1 {
		o.MaxConns = 1
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hl := &httpListener{Listener: ln, max: o.MaxConns, conns: map[*httpConn]struct{}{}}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		ReadTimeout:       o.ReadTimeout,
		WriteTimeout:      o.WriteTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ConnState:         hl.connState,
		ErrorLog:          log.New(httpLogWriter{logger}, "", 0),
	}
	return &HTTPServer{srv: srv, ln: hl}
}

// Addr is the bound address.
func (s *HTTPServer) Addr() net.Addr { return s.ln.Addr() }

// Serve runs until Shutdown; it returns nil after a shutdown.
func (s *HTTPServer) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}

// Shutdown stops accepting, lets requests in progress finish until ctx is
// done, then closes every connection.
func (s *HTTPServer) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

// httpListener counts the open connections and keeps them under max.
type httpListener struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns map[*httpConn]struct{}
}

// httpConn is one accepted connection; its state is guarded by the
// listener's mu.
type httpConn struct {
	net.Conn
	l     *httpListener
	once  sync.Once
	idle  bool      // no request in progress
	since time.Time // when it became idle
}

func (c *httpConn) Close() error {
	c.once.Do(func() { c.l.remove(c) })
	return c.Conn.Close()
}

func (l *httpListener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := &httpConn{Conn: raw, l: l, idle: true, since: time.Now()}
		var victim *httpConn
		l.mu.Lock()
		if len(l.conns) >= l.max {
			victim = l.oldestIdleLocked()
			if victim == nil {
				l.mu.Unlock()
				metricHTTPConnections.WithLabelValues("refused").Inc()
				_ = raw.Close()
				continue
			}
			delete(l.conns, victim) // its slot is the new connection's now
		}
		l.conns[c] = struct{}{}
		metricHTTPOpen.Set(float64(len(l.conns)))
		l.mu.Unlock()
		if victim != nil {
			metricHTTPEvicted.Inc()
			_ = victim.Close()
		}
		metricHTTPConnections.WithLabelValues("accepted").Inc()
		return c, nil
	}
}

func (l *httpListener) oldestIdleLocked() *httpConn {
	var oldest *httpConn
	for c := range l.conns {
		if c.idle && (oldest == nil || c.since.Before(oldest.since)) {
			oldest = c
		}
	}
	return oldest
}

func (l *httpListener) remove(c *httpConn) {
	l.mu.Lock()
	delete(l.conns, c)
	metricHTTPOpen.Set(float64(len(l.conns)))
	l.mu.Unlock()
}

// connState follows each connection between requests (evictable) and in
// a request (not).
func (l *httpListener) connState(nc net.Conn, st http.ConnState) {
	c, ok := nc.(*httpConn)
	if !ok {
		return
	}
	switch st {
	case http.StateNew, http.StateIdle:
		l.mu.Lock()
		c.idle, c.since = true, time.Now()
		l.mu.Unlock()
	case http.StateActive:
		l.mu.Lock()
		c.idle = false
		l.mu.Unlock()
	case http.StateHijacked, http.StateClosed:
		c.once.Do(func() { l.remove(c) })
	}
}

// httpLogWriter carries net/http's own error log lines (handler panics,
// malformed requests, accept errors) into the JSON log.
type httpLogWriter struct{ log *slog.Logger }

func (w httpLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if strings.HasPrefix(msg, "http: panic") {
		metricPanics.Inc()
		w.log.Error("http handler panic", "event", "panic", "listener", "http", "detail", msg)
	} else {
		w.log.Warn("http server error", "event", "http_error", "detail", msg)
	}
	return len(p), nil
}
