package gateway

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness condition: nil when ready, else why not.
type Check struct {
	Name  string
	Ready func() error
}

// HTTPHandler serves /metrics, /healthz (the process is alive) and /readyz
// (every check passes: a load balancer or Kubernetes sends mail here only
// then).
func HTTPHandler(checks []Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		var failed []string
		for _, c := range checks {
			if err := c.Ready(); err != nil {
				failed = append(failed, c.Name+": "+err.Error())
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
	return mux
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
		MaxConns:          256,
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
