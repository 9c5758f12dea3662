package smarthost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// rcptResult is the outcome of one attempt for one recipient.
type rcptResult struct {
	status    RcptStatus // RcptPending means deferred
	code      int
	enhanced  string
	reply     string
	remote    string
	noBackend bool // deferred because no backend was available
}

func resultFromErr(err error) rcptResult {
	r := rcptResult{status: RcptPending}
	var de *DeliveryError
	if errors.As(err, &de) {
		r.code, r.enhanced, r.reply, r.remote = de.Code, de.Status, de.Message, de.RemoteMTA
		if de.Code == 0 {
			r.reply = oneLine(de.Error())
		}
	} else {
		r.reply = oneLine(err.Error())
	}
	if !isTemporary(err) {
		r.status = RcptFailed
	}
	return r
}

// errNoBackend defers recipients of local domains while every backend is
// down (RFC 3463 4.4.1: no answer from host).
var errNoBackend = &DeliveryError{Stage: "route", Status: "4.4.1", Message: "no backend mailbox server available"}

// process runs one delivery attempt of m's pending recipients, records the
// results durably, bounces what failed, and reschedules or removes m.
func (q *Queue) process(ctx context.Context, m *message) {
	q.mu.Lock()
	env := m.env.clone()
	q.mu.Unlock()

	pending := env.pending()
	results := make(map[int]rcptResult, len(pending))
	if len(pending) > 0 {
		env.Attempts++
		q.deliverAll(ctx, m, &env, pending, results)
	}

	now := q.now()
	var failed []int
	for i, r := range results {
		rec := &env.Recipients[i]
		rec.LastCode, rec.LastStatus, rec.LastReply, rec.RemoteMTA = r.code, r.enhanced, r.reply, r.remote
		rec.LastAttempt = now
		rec.Status = r.status
		if r.status == RcptFailed {
			failed = append(failed, i)
		}
	}
	waitingBackend := false
	shuttingDown := ctx.Err() != nil
	for _, i := range env.pending() {
		rec := &env.Recipients[i]
		if !shuttingDown && now.Sub(env.ReceivedAt) >= q.cfg.Lifetime {
			// RFC 3463 4.4.7: the message stayed in the queue too long;
			// the last temporary error says why.
			rec.Status = RcptFailed
			last := rec.LastReply
			if rec.LastCode != 0 {
				last = fmt.Sprintf("%d %s %s", rec.LastCode, rec.LastStatus, rec.LastReply)
			}
			rec.LastStatus = "4.4.7"
			rec.LastReply = "delivery time expired; last error: " + strings.TrimSpace(last)
			rec.LastCode = 0
			failed = append(failed, i)
			metricQueueExpired.Inc()
			q.log.Info("expire", "event", "expire", "queue_id", m.id, "rcpt", rec.Addr,
				"age", now.Sub(env.ReceivedAt).Round(time.Second).String())
			continue
		}
		if results[i].noBackend {
			waitingBackend = true
		}
	}
	slices.Sort(failed)

	// The notice is committed before the failure is recorded: a crash in
	// between sends a duplicate notice, never none.
	if len(failed) > 0 && env.From != "" && !shuttingDown {
		if err := q.bounce(m.id, m.size, &env, failed, now); err != nil {
			q.log.Error("cannot enqueue DSN, will retry", "queue_id", m.id, "error", err)
			for _, i := range failed {
				env.Recipients[i].Status = RcptPending
			}
		}
	}

	done := len(env.pending()) == 0
	if done {
		if err := q.removeMessage(m.id); err != nil {
			q.log.Error("remove delivered message", "queue_id", m.id, "error", err)
			done = false
		}
	}
	if !done {
		if !shuttingDown {
			env.NextAttempt = now.Add(q.backoff(env.Attempts))
			env.WaitingBackend = waitingBackend
		}
		// Else the attempt was cut short by the shutdown, not by the
		// destination: the message stays due, and is tried again as
		// soon as the node is back.
		if err := q.saveEnvelope(m.id, &env); err != nil {
			// The old envelope stays: at worst recipients are retried
			// and delivered twice after a restart.
			q.log.Error("save delivery state", "queue_id", m.id, "error", err)
		}
	}
	q.mu.Lock()
	m.env = env
	q.mu.Unlock()
	q.finish(m, done)
}

// backoff returns the delay before attempt n+1: RetryMin doubling to RetryMax.
func (q *Queue) backoff(attempts int) time.Duration {
	d := q.cfg.RetryMin
	for i := 1; i < attempts && d < q.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, q.cfg.RetryMax)
}

// deliverAll groups the pending recipients by destination, one SMTP
// transaction per destination.
func (q *Queue) deliverAll(ctx context.Context, m *message, env *Envelope, pending []int, results map[int]rcptResult) {
	type group struct {
		dest destination
		idx  []int
	}
	var groups []*group
	byKey := make(map[string]*group)
	for _, i := range pending {
		dest, err := q.router.route(env.Recipients[i].Addr)
		if err != nil {
			results[i] = resultFromErr(err)
			continue
		}
		g := byKey[dest.key()]
		if g == nil {
			g = &group{dest: dest}
			byKey[dest.key()] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
	}
	if len(groups) == 0 {
		return
	}
	body, err := q.openBody(m.id)
	if err != nil {
		err = &DeliveryError{Stage: "local", Status: "4.3.0", Message: "cannot read spooled body", Err: err}
		for _, g := range groups {
			for _, i := range g.idx {
				results[i] = resultFromErr(err)
			}
		}
		q.log.Error("open spooled body", "queue_id", m.id, "error", err)
		return
	}
	defer body.Close()
	for _, g := range groups {
		if ctx.Err() != nil {
			return
		}
		q.deliverGroup(ctx, m, env, body, g.dest, g.idx, results)
	}
}

// deliverGroup delivers to one destination, trying the next backend or the
// next MX address when a host fails as a whole.
func (q *Queue) deliverGroup(ctx context.Context, m *message, env *Envelope, body *spooledBody, dest destination, idx []int, results map[int]rcptResult) {
	deferAll := func(err error, noBackend bool) {
		var de *DeliveryError
		if errors.As(err, &de) && de.Permanent && de.Stage != "route" {
			// A whole-host failure (e.g. 554 at the greeting) is not a
			// verdict on the recipients: retry, possibly elsewhere.
			cp := *de
			cp.Permanent = false
			err = &cp
		}
		for _, i := range idx {
			r := resultFromErr(err)
			r.noBackend = noBackend
			results[i] = r
		}
	}
	if dest.class == destBackend {
		tried := make(map[string]bool)
		var lastErr error
		for {
			addr, gen := q.backends.pick(tried)
			if addr == "" {
				err := lastErr
				if err == nil {
					err = errNoBackend
				}
				deferAll(err, true)
				q.logDeliver(m.id, env, dest.class, "", idx, results, 0)
				return
			}
			tried[addr] = true
			hostErr := q.transact(ctx, m, env, body, dest.class, hop{name: addr, addr: addr}, idx, results)
			if hostErr == nil {
				// Not a comeback: only backends that are up are
				// picked, and only a probe brings one back.
				q.backends.markUp(addr, gen)
				return
			}
			lastErr = hostErr
			if ctx.Err() != nil {
				deferAll(hostErr, false)
				return
			}
			if wentDown, period := q.backends.markDown(addr, gen); wentDown {
				q.log.Warn("backend_down", "event", "backend_down", "backend", addr,
					"error", hostErr.Error(), "retry_in", period.String())
			}
		}
	}

	hops, err := q.router.hops(ctx, dest)
	if err != nil {
		for _, i := range idx {
			results[i] = resultFromErr(err)
		}
		q.logDeliver(m.id, env, dest.class, "", idx, results, 0)
		return
	}
	var lastErr error
	for _, h := range hops {
		hostErr := q.transact(ctx, m, env, body, dest.class, h, idx, results)
		if hostErr == nil {
			return
		}
		lastErr = hostErr
		if ctx.Err() != nil {
			break
		}
	}
	deferAll(lastErr, false)
}

// transact runs one SMTP transaction for the recipients idx at h. It
// returns a non-nil error when the host failed as a whole (connection,
// greeting/EHLO/MAIL 4xx, 421, 4xx at the end of DATA) and nothing was
// decided for the recipients; otherwise it fills results.
func (q *Queue) transact(ctx context.Context, m *message, env *Envelope, body *spooledBody, class string, h hop, idx []int, results map[int]rcptResult) error {
	start := time.Now()
	hostErr := q.transactOnce(ctx, m, env, body, h, idx, results)
	if hostErr != nil {
		// The caller decides what a host failure means for the
		// recipients; for the log it is a deferral.
		for _, i := range idx {
			r := resultFromErr(hostErr)
			r.status = RcptPending
			results[i] = r
		}
	}
	q.logDeliver(m.id, env, class, h.addr, idx, results, time.Since(start))
	return hostErr
}

func (q *Queue) transactOnce(ctx context.Context, m *message, env *Envelope, body *spooledBody, h hop, idx []int, results map[int]rcptResult) error {
	var sc *smtpConn
	var err error
	// A pooled connection may have been closed by the peer meanwhile: if
	// it fails before MAIL is accepted, try once more on a fresh one.
	for try := 0; ; try++ {
		reused := false
		if try == 0 {
			sc = q.conns.get(h.addr)
			reused = sc != nil
		}
		if sc == nil {
			if sc, err = q.dial(ctx, h.addr, h.name); err != nil {
				return err
			}
		}
		raw := sc.raw
		stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
		err = q.startMail(sc, env, m.size, reused)
		if err == nil {
			defer stop()
			break
		}
		stop()
		sc.abort()
		sc = nil
		if !reused {
			return smtpFailure("mail", h.name, err)
		}
	}

	// RFC 5321 §3.3: each recipient gets its own verdict.
	accepted := make([]int, 0, len(idx))
	for _, i := range idx {
		rec := &env.Recipients[i]
		if err := sc.c.Rcpt(rec.Addr, rcptOptions(rec)); err != nil {
			de := smtpFailure("rcpt", h.name, err)
			if !isSMTPReply(err) || de.Code == 421 {
				sc.abort()
				return de
			}
			results[i] = resultFromErr(de)
			continue
		}
		accepted = append(accepted, i)
	}
	if len(accepted) == 0 {
		q.conns.put(sc)
		return nil
	}

	w, err := sc.c.Data()
	if err != nil {
		return q.dataFailure(sc, h, "data", err, accepted, results)
	}
	if _, err := body.r.Seek(0, io.SeekStart); err != nil {
		sc.abort()
		return &DeliveryError{Stage: "local", Status: "4.3.0", Message: "cannot read spooled body", Err: err}
	}
	if len(env.Prepend) > 0 {
		if _, err = w.Write(env.Prepend); err != nil {
			sc.abort()
			return smtpFailure("data", h.name, err)
		}
	}
	if _, err = io.Copy(newLineFolder(w, maxOutputLine), body.r); err != nil {
		sc.abort()
		return smtpFailure("data", h.name, err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return q.dataFailure(sc, h, "data", err, accepted, results)
	}
	for _, i := range accepted {
		results[i] = rcptResult{status: RcptDelivered, code: 250, reply: oneLine(resp.StatusText), remote: h.name}
	}
	q.conns.put(sc)
	return nil
}

// startMail prepares a connection for a new transaction and sends MAIL.
func (q *Queue) startMail(sc *smtpConn, env *Envelope, size int64, reused bool) error {
	if reused {
		// RSET (RFC 5321 §4.1.1.5) checks the session is alive and
		// clears any leftover transaction state.
		if err := sc.c.Reset(); err != nil {
			return err
		}
	}
	opts := &smtp.MailOptions{
		Size:       size + int64(len(env.Prepend)),
		EnvelopeID: env.EnvID,
		Return:     smtp.DSNReturn(env.Ret),
	}
	return sc.c.Mail(env.From, opts)
}

// dataFailure handles an error at DATA or at its final dot: a 5xx fails
// every accepted recipient, anything else is a host failure.
func (q *Queue) dataFailure(sc *smtpConn, h hop, stage string, err error, accepted []int, results map[int]rcptResult) error {
	de := smtpFailure(stage, h.name, err)
	if !isSMTPReply(err) {
		sc.abort()
		return de
	}
	if de.Permanent {
		for _, i := range accepted {
			results[i] = resultFromErr(de)
		}
		q.conns.put(sc)
		return nil
	}
	if de.Code == 421 {
		sc.abort()
	} else {
		q.conns.put(sc)
	}
	return de
}

// rcptOptions passes the RFC 3461 parameters on; go-smtp sends them only if
// the server announced DSN.
func rcptOptions(rec *Recipient) *smtp.RcptOptions {
	opts := &smtp.RcptOptions{}
	for _, n := range rec.Notify {
		opts.Notify = append(opts.Notify, smtp.DSNNotify(n))
	}
	if typ, addr, ok := strings.Cut(rec.ORcpt, ";"); ok && strings.EqualFold(strings.TrimSpace(typ), "rfc822") {
		opts.OriginalRecipientType = smtp.DSNAddressTypeRFC822
		opts.OriginalRecipient = strings.TrimSpace(addr)
	}
	return opts
}

// logDeliver writes one mail log line per distinct outcome of a transaction
// and counts the attempts.
func (q *Queue) logDeliver(id string, env *Envelope, class, addr string, idx []int, results map[int]rcptResult, took time.Duration) {
	type key struct {
		status RcptStatus
		code   int
		reply  string
	}
	var order []key
	byKey := make(map[key][]string)
	for _, i := range idx {
		r, ok := results[i]
		if !ok {
			continue
		}
		k := key{r.status, r.code, r.reply}
		if _, seen := byKey[k]; !seen {
			order = append(order, k)
		}
		byKey[k] = append(byKey[k], env.Recipients[i].Addr)
	}
	for _, k := range order {
		result := resultDeferred
		switch k.status {
		case RcptDelivered:
			result = resultDelivered
		case RcptFailed:
			result = resultFailed
		}
		rcpts := byKey[k]
		metricDeliveryAttempts.WithLabelValues(class, result).Add(float64(len(rcpts)))
		q.log.Info("deliver", "event", "deliver", "queue_id", id, "attempt", env.Attempts,
			"from", env.From, "rcpts", rcpts, "destination", class, "addr", addr,
			"code", k.code, "reply", k.reply, "result", result, "duration", took.Seconds())
	}
}
