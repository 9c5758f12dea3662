package smarthost

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// smtpConn is an SMTP client connection that can be pooled.
type smtpConn struct {
	c        *smtp.Client
	raw      net.Conn // the TCP connection, closed to abort on cancellation
	addr     string
	tls      bool
	lastUsed time.Time
}

// close ends the session politely but without waiting long: the peer may be
// the reason we are closing.
func (sc *smtpConn) close() {
	sc.c.CommandTimeout = 5 * time.Second
	if err := sc.c.Quit(); err != nil {
		_ = sc.c.Close()
	}
}

// abort drops the connection without QUIT (protocol state unknown).
func (sc *smtpConn) abort() { _ = sc.c.Close() }

// connPool keeps idle connections per next-hop address, most recently used
// first, so that bursts to one backend reuse sessions (RFC 5321 §3.3: a
// session may carry several transactions).
type connPool struct {
	maxIdle     int
	idleTimeout time.Duration

	mu   sync.Mutex
	idle map[string][]*smtpConn
}

func newConnPool(maxIdle int, idleTimeout time.Duration) *connPool {
	return &connPool{maxIdle: maxIdle, idleTimeout: idleTimeout, idle: make(map[string][]*smtpConn)}
}

// get returns an idle connection to addr, nil if there is none.
func (p *connPool) get(addr string) *smtpConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[addr]
	for len(list) > 0 {
		sc := list[len(list)-1]
		list = list[:len(list)-1]
		if time.Since(sc.lastUsed) < p.idleTimeout {
			p.idle[addr] = list
			return sc
		}
		go sc.close()
	}
	delete(p.idle, addr)
	return nil
}

// put returns a healthy connection to the pool, or closes it if the pool
// for addr is full.
func (p *connPool) put(sc *smtpConn) {
	sc.lastUsed = time.Now()
	p.mu.Lock()
	if len(p.idle[sc.addr]) < p.maxIdle {
		p.idle[sc.addr] = append(p.idle[sc.addr], sc)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	sc.close()
}

// reapLoop closes connections idle for longer than the idle timeout.
func (p *connPool) reapLoop(ctx context.Context) {
	t := time.NewTicker(min(p.idleTimeout/2, 5*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var stale []*smtpConn
		p.mu.Lock()
		for addr, list := range p.idle {
			keep := list[:0]
			for _, sc := range list {
				if time.Since(sc.lastUsed) >= p.idleTimeout {
					stale = append(stale, sc)
				} else {
					keep = append(keep, sc)
				}
			}
			if len(keep) == 0 {
				delete(p.idle, addr)
			} else {
				p.idle[addr] = keep
			}
		}
		p.mu.Unlock()
		for _, sc := range stale {
			sc.close()
		}
	}
}

// closeAll closes every idle connection.
func (p *connPool) closeAll() {
	p.mu.Lock()
	all := p.idle
	p.idle = make(map[string][]*smtpConn)
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, list := range all {
		for _, sc := range list {
			wg.Go(sc.close)
		}
	}
	wg.Wait()
}

// greetedConn replays a greeting to the go-smtp client: we read the real
// greeting (and did EHLO/STARTTLS) ourselves before handing it the
// connection, because go-smtp v0.25 has no public way to start TLS only
// when the server offers it.
type greetedConn struct {
	net.Conn
	greeting []byte
}

func (g *greetedConn) Read(p []byte) (int, error) {
	if len(g.greeting) > 0 {
		n := copy(p, g.greeting)
		g.greeting = g.greeting[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}

// errTLSHandshake marks a failed TLS handshake after STARTTLS was accepted.
var errTLSHandshake = errors.New("tls handshake failed")

// dial opens an SMTP session to addr: greeting, EHLO, opportunistic
// STARTTLS (RFC 3207; certificates are not verified at this level, as
// RFC 7435 opportunistic security allows), EHLO again.
func (q *Queue) dial(ctx context.Context, addr, remote string) (*smtpConn, error) {
	sc, err := q.dialOnce(ctx, addr, remote, true)
	if err != nil && errors.Is(err, errTLSHandshake) {
		// A broken TLS stack at the peer: deliver in clear text rather
		// than not at all, like Postfix's opportunistic level does.
		q.log.Warn("STARTTLS failed, retrying without TLS", "addr", addr, "error", err)
		sc, err = q.dialOnce(ctx, addr, remote, false)
	}
	return sc, err
}

func (q *Queue) dialOnce(ctx context.Context, addr, remote string, allowTLS bool) (*smtpConn, error) {
	dctx, cancel := context.WithTimeout(ctx, connectTimeout)
	raw, err := q.cfg.Dialer(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return nil, smtpFailure("connect", remote, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	defer stop()
	sc, err := q.handshake(ctx, raw, addr, remote, allowTLS)
	if err != nil {
		_ = raw.Close()
		return nil, err
	}
	return sc, nil
}

func (q *Queue) handshake(ctx context.Context, raw net.Conn, addr, remote string, allowTLS bool) (*smtpConn, error) {
	_ = raw.SetDeadline(time.Now().Add(commandTimeout))
	tp := textproto.NewConn(raw)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, smtpFailure("greeting", remote, protoErr(err))
	}
	conn := raw
	useTLS := false
	if allowTLS {
		ehlo, err := cmd(tp, 250, "EHLO %s", q.cfg.Hostname)
		if err != nil {
			return nil, smtpFailure("ehlo", remote, err)
		}
		if hasExtension(ehlo, "STARTTLS") {
			if _, err := cmd(tp, 220, "STARTTLS"); err == nil {
				host, _, _ := net.SplitHostPort(addr)
				if remote != "" && net.ParseIP(remote) == nil {
					host = remote
				}
				tc := tls.Client(raw, &tls.Config{
					ServerName:         host,
					InsecureSkipVerify: true, //nolint:gosec // opportunistic TLS, RFC 7435
					MinVersion:         tls.VersionTLS12,
				})
				if err := tc.HandshakeContext(ctx); err != nil {
					return nil, smtpFailure("starttls", remote, errors.Join(errTLSHandshake, err))
				}
				conn, useTLS = tc, true
			} else if !isSMTPReply(err) {
				return nil, smtpFailure("starttls", remote, err)
			}
			// A refused STARTTLS leaves the session usable in clear text.
		}
	}
	_ = raw.SetDeadline(time.Time{})
	c := smtp.NewClient(&greetedConn{Conn: conn, greeting: []byte("220 " + remote + "\r\n")})
	c.CommandTimeout = commandTimeout
	c.SubmissionTimeout = dataTimeout
	// After STARTTLS the client must say EHLO again (RFC 3207 §4.2); in
	// clear text go-smtp's own EHLO restarts the session (RFC 5321 §4.1.4).
	if err := c.Hello(q.cfg.Hostname); err != nil {
		_ = c.Close()
		return nil, smtpFailure("ehlo", remote, err)
	}
	return &smtpConn{c: c, raw: raw, addr: addr, tls: useTLS}, nil
}

// cmd sends a command and reads its reply, converting reply errors to
// *smtp.SMTPError.
func cmd(tp *textproto.Conn, expect int, format string, args ...any) (string, error) {
	id, err := tp.Cmd(format, args...)
	if err != nil {
		return "", err
	}
	tp.StartResponse(id)
	defer tp.EndResponse(id)
	_, msg, err := tp.ReadResponse(expect)
	return msg, protoErr(err)
}

// protoErr converts a textproto reply error into the *smtp.SMTPError that
// go-smtp's client returns, so that classification has one input type.
func protoErr(err error) error {
	var te *textproto.Error
	if errors.As(err, &te) {
		return &smtp.SMTPError{Code: te.Code, Message: te.Msg}
	}
	return err
}

func isSMTPReply(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se)
}

func hasExtension(ehloReply, ext string) bool {
	lines := strings.Split(ehloReply, "\n")
	for _, l := range lines[min(1, len(lines)):] {
		kw, _, _ := strings.Cut(strings.TrimSpace(l), " ")
		if strings.EqualFold(kw, ext) {
			return true
		}
	}
	return false
}

// probe checks that a backend answers: connect, greeting, EHLO, QUIT.
func (q *Queue) probe(ctx context.Context, addr string) error {
	sc, err := q.dial(ctx, addr, addr)
	if err != nil {
		return err
	}
	sc.close()
	return nil
}
