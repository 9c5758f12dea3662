package gateway

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// maxCommandLine bounds an SMTP command line, CRLF included. RFC 5321
// §4.5.3.1.4 asks for at least 512 octets; extensions make lines longer,
// and Postfix reads up to 2048.
const maxCommandLine = 2048

// Framing modes of the client's byte stream.
const (
	modeCommand = iota // command lines
	modeData           // a DATA body, up to and including <CRLF>.<CRLF>
	modeChunk          // the octets of a BDAT chunk
)

// States of the end-of-data scanner; the same machine as go-smtp's data
// reader, so that both agree byte for byte on where a DATA body ends.
const (
	dataBeginLine = iota
	dataDot
	dataDotCR
	dataCR
	dataInLine
)

// guardConn sits between the client's TCP connection and go-smtp. go-smtp
// parses the commands and calls the session; the guard frames the same byte
// stream first (command lines, DATA bodies, BDAT chunks) and enforces the
// protocol rules that go-smtp leaves to its user, so that they hold
// whatever go-smtp's version does:
//
//   - Command lines reach go-smtp only whole. A line cut off by a timeout or
//     a disconnect is never run as a command, and a line over
//     maxCommandLine ends the session. Message data has no line limit: long
//     lines are stored as they came.
//   - A timeout, in a command or in message data, always ends the session
//     with "421 4.4.2 timeout exceeded".
//   - A BDAT chunk that ends before its announced size marks the
//     connection truncated: the session must not store the message.
//   - Every 421 reply closes the connection. After HardErrorLimit 5xx
//     replies or JunkCommandLimit NOOP/RSET/VRFY/HELP/ETRN commands the
//     session ends with 421 (Postfix's smtpd_hard_error_limit and
//     smtpd_junk_command_limit); both counters restart when a message is
//     accepted.
//   - MAIL with SIZE over the limit, however large the number, gets
//     552 5.3.4.
//   - STARTTLS is done here, not by go-smtp: a failed handshake closes the
//     connection instead of carrying on in plain text, commands pipelined
//     behind STARTTLS in plain text are discarded (RFC 3207 §5), and the
//     transaction and the EHLO are forgotten afterwards.
//
// Commands this guard answers itself are answered only when go-smtp has
// answered everything before them: go-smtp reads again only when it has
// replied to all the lines it was given, so a Read with nothing pending is
// the point where the guard may speak.
//
// Read and Write are called from the connection's goroutine only; the
// accessors used by the session (TLSState, Truncated, Dead) are safe from
// any goroutine.
type guardConn struct {
	net.Conn          // the TCP connection; Close, addresses
	cur      net.Conn // the TCP connection, or the TLS connection over it
	srv      *Server
	listener string
	id       string // connection id in the mail log

	rbuf []byte // bytes read from cur and not yet framed
	rerr error  // the error that ended reading, once seen
	out  []byte // framed bytes ready for go-smtp

	mode      int
	dataState int
	chunkLeft int64
	// afterData: the last line handed over was DATA; the next Read looks
	// at go-smtp's reply to it (354 starts the body).
	afterData bool
	needHelo  bool // after STARTTLS, until EHLO or HELO
	// inTx: a MAIL was handed over and its transaction has not ended
	// (RSET, EHLO, the end of DATA or BDAT LAST). STARTTLS is refused
	// then, as Postfix does: a BDAT transfer in flight would otherwise
	// switch connections under it.
	inTx      bool
	lastReply int // code of the last complete reply written

	wbuf    []byte // reply bytes written, not yet a complete line
	swallow bool   // drop go-smtp's reply to a command the guard injected
	ehlo    bool   // the reply to an EHLO is being written
	tlsCaps bool   // STARTTLS has been added to that reply

	errors, junk int
	why421       string // the reason recorded when the next 421 closes

	tlsState  atomic.Pointer[tls.ConnectionState]
	truncated atomic.Bool
	dead      atomic.Pointer[string] // why the guard ended the session
	closeOnce sync.Once
}

func newGuardConn(c net.Conn, srv *Server, listener, id string) *guardConn {
	return &guardConn{Conn: c, cur: c, srv: srv, listener: listener, id: id}
}

// TLSState is the TLS connection state after STARTTLS, or nil.
func (g *guardConn) TLSState() *tls.ConnectionState { return g.tlsState.Load() }

// Truncated reports that the client disconnected inside a BDAT chunk.
func (g *guardConn) Truncated() bool { return g.truncated.Load() }

// Dead returns why the guard ended the session ("" while it goes on).
// Nothing the client sends after that may be acted on.
func (g *guardConn) Dead() string {
	if p := g.dead.Load(); p != nil {
		return *p
	}
	return ""
}

// messageAccepted restarts the error and junk counters: a client that
// delivers mail is not abusing the session.
func (g *guardConn) messageAccepted() { g.errors, g.junk = 0, 0 }

func (g *guardConn) kill(why string) {
	g.dead.CompareAndSwap(nil, &why)
}

func (g *guardConn) SetDeadline(t time.Time) error      { return g.cur.SetDeadline(t) }
func (g *guardConn) SetReadDeadline(t time.Time) error  { return g.cur.SetReadDeadline(t) }
func (g *guardConn) SetWriteDeadline(t time.Time) error { return g.cur.SetWriteDeadline(t) }

func (g *guardConn) Close() error {
	var err error
	g.closeOnce.Do(func() {
		if g.cur != g.Conn {
			// The TLS close alert is bounded by tls.Conn's own
			// five-second deadline.
			_ = g.cur.Close()
		}
		err = g.Conn.Close()
	})
	return err
}

func (g *guardConn) Read(p []byte) (int, error) {
	for len(g.out) == 0 {
		if g.Dead() != "" {
			return 0, io.EOF
		}
		if err := g.frame(); err != nil {
			return 0, err
		}
		if len(g.out) > 0 || g.Dead() != "" {
			continue
		}
		if g.rerr != nil {
			return 0, g.readFailed()
		}
		g.fill()
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	if len(g.out) == 0 {
		g.out = g.out[:0:0]
	}
	return n, nil
}

// fill reads once from the connection into rbuf.
func (g *guardConn) fill() {
	if cap(g.rbuf)-len(g.rbuf) < 4096 {
		nb := make([]byte, len(g.rbuf), len(g.rbuf)+32<<10)
		copy(nb, g.rbuf)
		g.rbuf = nb
	}
	n, err := g.cur.Read(g.rbuf[len(g.rbuf):cap(g.rbuf)])
	g.rbuf = g.rbuf[:len(g.rbuf)+n]
	if err != nil {
		g.rerr = err
	}
}

// readFailed handles the end of the client's input: a timeout ends the
// session with 421; a disconnect inside a BDAT chunk truncates the message.
// A partial command line left in rbuf is dropped, never run.
func (g *guardConn) readFailed() error {
	err := g.rerr
	if g.mode == modeChunk && g.chunkLeft > 0 {
		g.truncated.Store(true)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		where := "command"
		switch g.mode {
		case modeData:
			where = "DATA"
		case modeChunk:
			where = "BDAT"
		}
		g.refuse(reasonTimeout, "", "after", where, "pending_bytes", len(g.rbuf))
		return io.EOF
	}
	if g.mode != modeCommand || len(g.rbuf) > 0 {
		where := "BDAT"
		if g.mode == modeData {
			where = "DATA"
		} else if g.mode == modeCommand {
			where = "a partial command"
		}
		g.srv.log.Info("lost connection", "event", "disconnect", "conn", g.id, "listener", g.listener,
			"client_ip", remoteIP(g.Conn).String(), "after", where, "error", err.Error())
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return io.EOF
	}
	return err
}

// frame moves what can be handed to go-smtp from rbuf to out, or answers a
// command itself when go-smtp is idle (out was empty on entry).
func (g *guardConn) frame() error {
	idle := len(g.out) == 0
	if g.afterData && idle {
		g.afterData = false
		if g.lastReply == 354 {
			g.mode, g.dataState = modeData, dataBeginLine
		}
	}
	for len(g.rbuf) > 0 && g.Dead() == "" {
		switch g.mode {
		case modeChunk:
			n := int64(len(g.rbuf))
			if n > g.chunkLeft {
				n = g.chunkLeft
			}
			g.take(int(n))
			g.chunkLeft -= n
			if g.chunkLeft == 0 {
				g.mode = modeCommand
			}
		case modeData:
			i, end := 0, false
			for ; i < len(g.rbuf) && !end; i++ {
				end = g.scanData(g.rbuf[i])
			}
			g.take(i)
			if end {
				g.mode, g.inTx = modeCommand, false
			}
		default:
			nl := bytes.IndexByte(g.rbuf, '\n')
			if nl < 0 && len(g.rbuf) < maxCommandLine {
				return nil // wait for the rest of the line
			}
			if nl < 0 || nl+1 > maxCommandLine {
				if !idle {
					return nil // answer once go-smtp has caught up
				}
				g.refuse(reasonLineTooLong, fmt.Sprintf("%d bytes at most", maxCommandLine))
				g.kill(string(reasonLineTooLong))
				return nil
			}
			line := string(bytes.TrimRight(g.rbuf[:nl], "\r"))
			stop, err := g.command(line, nl+1, idle)
			if err != nil || stop {
				return err
			}
		}
	}
	return nil
}

// take hands n bytes of rbuf over to go-smtp.
func (g *guardConn) take(n int) {
	g.out = append(g.out, g.rbuf[:n]...)
	g.consume(n)
}

func (g *guardConn) consume(n int) {
	rest := copy(g.rbuf, g.rbuf[n:])
	g.rbuf = g.rbuf[:rest]
}

// scanData advances the end-of-data scanner by one byte and reports whether
// it completed the <CRLF>.<CRLF> line.
func (g *guardConn) scanData(c byte) bool {
	switch g.dataState {
	case dataBeginLine:
		switch c {
		case '.':
			g.dataState = dataDot
		case '\r':
			g.dataState = dataCR
		default:
			g.dataState = dataInLine
		}
	case dataDot:
		if c == '\r' {
			g.dataState = dataDotCR
		} else {
			g.dataState = dataInLine
		}
	case dataDotCR:
		if c == '\n' {
			return true
		}
		g.dataState = dataInLine
	case dataCR:
		if c == '\n' {
			g.dataState = dataBeginLine
		} else {
			g.dataState = dataInLine
		}
	case dataInLine:
		if c == '\r' {
			g.dataState = dataCR
		}
	}
	return false
}

// command looks at one complete command line (n bytes of rbuf with its line
// end). It hands the line to go-smtp, or, for the commands the guard
// answers, stops until go-smtp is idle and answers. stop ends this round of
// framing.
func (g *guardConn) command(line string, n int, idle bool) (stop bool, err error) {
	verb := strings.ToUpper(line[:min(len(line), 4)])
	if len(line) >= 8 && strings.EqualFold(line[:8], "STARTTLS") {
		verb = "STARTTLS"
	}
	special := func(answer func()) (bool, error) {
		if !idle {
			return true, nil
		}
		g.consume(n)
		answer()
		return true, nil
	}
	switch verb {
	case "STARTTLS":
		if g.srv.cfg.TLS != nil {
			return special(func() { g.startTLS(line) })
		}
	case "EHLO", "HELO":
		if !idle {
			// Alone, so that the next reply written is its own.
			return true, nil
		}
		g.needHelo, g.inTx = false, false
		g.ehlo = verb == "EHLO"
		g.tlsCaps = false
	case "MAIL":
		g.inTx = true
		if g.needHelo {
			return special(func() { g.reply(reply(reasonNeedHelo, "")) })
		}
		if r := g.mailSize(line); r != "" {
			return special(func() { g.refuse(r, fmt.Sprintf("%d bytes at most", g.srv.cfg.MaxMessageBytes)) })
		}
	case "NOOP", "RSET", "VRFY", "HELP", "ETRN", "EXPN":
		if verb == "RSET" {
			g.inTx = false
		}
		if lim := g.srv.cfg.JunkCommandLimit; lim > 0 && g.junk >= lim {
			return special(func() { g.refuse(reasonTooManyJunk, "") })
		}
		g.junk++
	case "DATA":
		if len(line) == 4 {
			// The body follows only if go-smtp answers 354: hand
			// the line over and wait for that answer.
			g.take(n)
			g.afterData = true
			return true, nil
		}
	case "BDAT":
		if size, ok := bdatSize(line); ok {
			g.take(n)
			if strings.HasSuffix(strings.ToUpper(strings.TrimSpace(line)), "LAST") {
				g.inTx = false
			}
			if size > 0 {
				g.mode, g.chunkLeft = modeChunk, size
			}
			return false, nil
		}
	}
	g.take(n)
	return false, nil
}

// bdatSize parses a BDAT line exactly as go-smtp does: when it accepts the
// syntax, the chunk's octets follow the line whatever the reply.
func bdatSize(line string) (int64, bool) {
	if len(line) <= 5 || line[4] != ' ' {
		return 0, false
	}
	args := strings.Fields(line[5:])
	if len(args) == 0 || len(args) > 2 || (len(args) == 2 && !strings.EqualFold(args[1], "LAST")) {
		return 0, false
	}
	size, err := strconv.ParseUint(args[0], 10, 32)
	if err != nil {
		return 0, false
	}
	return int64(size), true
}

// mailSize checks MAIL's SIZE parameter against the limit. Any number of
// digits is a size: one too large for 64 bits is over the limit too.
func (g *guardConn) mailSize(line string) reason {
	max := g.srv.cfg.MaxMessageBytes
	if max <= 0 {
		return ""
	}
	for _, f := range strings.Fields(line) {
		if len(f) < 6 || !strings.EqualFold(f[:5], "SIZE=") {
			continue
		}
		v := f[5:]
		if strings.Trim(v, "0123456789") != "" {
			return "" // not a number: go-smtp answers 501
		}
		if n, err := strconv.ParseUint(v, 10, 64); err != nil || n > uint64(max) {
			return reasonMessageTooLarge
		}
	}
	return ""
}

// startTLS answers STARTTLS and runs the handshake. The client's plain-text
// bytes after the command are dropped (RFC 3207 §5: pipelining must stop at
// STARTTLS), a failed handshake closes the connection, and a successful one
// makes the client start over with EHLO and a new transaction.
func (g *guardConn) startTLS(line string) {
	if g.TLSState() != nil {
		g.reply(reply(reasonTLSActive, ""))
		return
	}
	if g.inTx {
		g.reply(reply(reasonTxInProgress, ""))
		return
	}
	if strings.TrimSpace(line[8:]) != "" {
		g.reply(reply(reasonSyntax, "STARTTLS takes no argument"))
		return
	}
	g.reply(&smtp.SMTPError{Code: 220, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ready to start TLS"})
	if g.Dead() != "" {
		return
	}
	ip := remoteIP(g.Conn).String()
	if len(g.rbuf) > 0 {
		g.srv.log.Info("plain-text commands after STARTTLS discarded", "event", "starttls_injection", "conn", g.id,
			"listener", g.listener, "client_ip", ip, "bytes", len(g.rbuf))
		g.rbuf = g.rbuf[:0]
	}
	tc := tls.Server(g.Conn, g.srv.cfg.TLS)
	timeout := g.srv.cfg.CommandTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	_ = g.Conn.SetDeadline(time.Now().Add(timeout))
	err := tc.Handshake()
	_ = g.Conn.SetDeadline(time.Time{})
	if err != nil {
		metricTLSHandshakes.WithLabelValues(g.listener, "failed").Inc()
		g.srv.log.Info("TLS handshake failed", "event", "tls_error", "conn", g.id, "listener", g.listener,
			"client_ip", ip, "error", err.Error())
		g.kill("tls_handshake_failed")
		_ = g.Conn.Close()
		return
	}
	st := tc.ConnectionState()
	g.cur = tc
	g.tlsState.Store(&st)
	g.rerr = nil
	g.needHelo = true
	metricTLSHandshakes.WithLabelValues(g.listener, "ok").Inc()
	g.srv.log.Debug("STARTTLS", "event", "starttls", "conn", g.id, "listener", g.listener, "client_ip", ip,
		"tls_version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	// go-smtp does not know about the handshake: make it drop the
	// transaction, and drop its answer.
	g.out = append(g.out, "RSET\r\n"...)
	g.swallow = true
}

// refuse counts, logs and sends a refusal the guard makes itself.
func (g *guardConn) refuse(r reason, detail string, attrs ...any) {
	e := reply(r, detail)
	metricMessages.WithLabelValues(g.listener, outcome(e), string(r)).Inc()
	args := append([]any{"event", "reject", "conn", g.id, "listener", g.listener, "client_ip", remoteIP(g.Conn).String(),
		"reason", string(r), "reply", replyText(e)}, attrs...)
	g.srv.log.Info("refused", args...)
	g.why421 = string(r)
	g.reply(e)
}

// reply sends a reply of the guard's own, with the same accounting as
// go-smtp's replies.
func (g *guardConn) reply(e *smtp.SMTPError) {
	line := fmt.Sprintf("%d %d.%d.%d %s\r\n", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message)
	_, _ = g.Write([]byte(line))
}

// Write passes go-smtp's replies on, line by line: it adds STARTTLS to the
// EHLO reply, counts error replies, and closes after a 421.
func (g *guardConn) Write(p []byte) (int, error) {
	if g.Dead() != "" {
		return len(p), nil // the client was told 421 already
	}
	g.wbuf = append(g.wbuf, p...)
	var out []byte
	var after *smtp.SMTPError
	for {
		nl := bytes.IndexByte(g.wbuf, '\n')
		if nl < 0 {
			break
		}
		line := g.wbuf[:nl+1]
		code, final := replyCode(line)
		switch {
		case g.swallow:
			g.swallow = !final
		default:
			out = append(out, line...)
			if g.ehlo && code == 250 && !final && !g.tlsCaps {
				g.tlsCaps = true
				if g.srv.cfg.TLS != nil && g.TLSState() == nil {
					out = append(out, "250-STARTTLS\r\n"...)
				}
			}
			if final {
				g.ehlo = false
				g.lastReply = code
				switch {
				case code == 421:
					why := g.why421
					if why == "" {
						why = "421"
					}
					g.kill(why)
				case code >= 500:
					// Only permanent refusals count: a 4xx is the
					// server's own trouble (scanner, spool,
					// greylisting) or a limit a good client meets.
					g.errors++
					if lim := g.srv.cfg.HardErrorLimit; lim > 0 && g.errors >= lim && after == nil {
						after = reply(reasonTooManyErrors, "")
					}
				}
			}
		}
		g.wbuf = g.wbuf[nl+1:]
	}
	if len(g.wbuf) == 0 {
		g.wbuf = g.wbuf[:0:0]
	}
	if after != nil {
		metricMessages.WithLabelValues(g.listener, outcome(after), string(reasonTooManyErrors)).Inc()
		g.srv.log.Info("refused", "event", "reject", "conn", g.id, "listener", g.listener,
			"client_ip", remoteIP(g.Conn).String(), "reason", string(reasonTooManyErrors), "reply", replyText(after), "errors", g.errors)
		out = fmt.Appendf(out, "%d %d.%d.%d %s\r\n", after.Code, after.EnhancedCode[0], after.EnhancedCode[1], after.EnhancedCode[2], after.Message)
		g.kill(string(reasonTooManyErrors))
	}
	if len(out) == 0 {
		return len(p), nil
	}
	if g.srv.cfg.CommandTimeout > 0 {
		_ = g.cur.SetWriteDeadline(time.Now().Add(g.srv.cfg.CommandTimeout))
	}
	if _, err := g.cur.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// replyCode reads the code of a reply line and whether it is the last line
// of its reply ("250 " rather than "250-").
func replyCode(line []byte) (int, bool) {
	if len(line) < 4 {
		return 0, true
	}
	code, err := strconv.Atoi(string(line[:3]))
	if err != nil {
		return 0, true
	}
	return code, line[3] != '-'
}

func replyText(e *smtp.SMTPError) string {
	return fmt.Sprintf("%d %d.%d.%d %s", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message)
}

// guardOf finds the guard under a go-smtp connection.
func guardOf(c *smtp.Conn) *guardConn {
	g, _ := c.Conn().(*guardConn)
	return g
}
