package filter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"
)

// DefaultStageTimeout bounds one stage when the config gives none: longer
// than any single check's own timeout (clamd's is 30 s), shorter than the
// sender's patience at the end of DATA (RFC 5321 §4.5.3.2.6: 10 minutes).
const DefaultStageTimeout = 2 * time.Minute

// Thresholds turn a score into an action (the config's spam section). A
// threshold of 0 is off.
type Thresholds struct {
	Tag, Quarantine, Reject float64
}

// Config is one pipeline: the checks of one listener's policy.
type Config struct {
	Conn   []ConnCheck
	Sender []SenderCheck
	Rcpt   []RcptCheck
	Body   []BodyCheck
	// StageTimeout bounds each stage; DefaultStageTimeout when zero.
	StageTimeout time.Duration
	Thresholds   Thresholds
	// Scores override the score of the named symbols (spam.scores).
	Scores map[string]float64
	// Spam turns on the verdict of spam scoring at the end of DATA: the
	// X-Spam-Score and X-Spam-Status headers (and X-Spam-Flag at the tag
	// level), the score, action and symbols in the mail log, and the spam
	// metrics.
	Spam bool
	// AfterBody, when set, is told every body decision the body checks
	// made (not one refused before them), once the verdict is complete:
	// what learns from the verdict (Bayes autolearn). It runs before the
	// client gets its reply, under the session's context.
	AfterBody func(ctx context.Context, b *Body, d Decision)
	Logger    *slog.Logger
}

// Pipeline runs the checks of each stage and merges their results.
type Pipeline struct {
	cfg Config
}

// New returns a pipeline; a nil *Pipeline runs no checks and accepts.
func New(cfg Config) *Pipeline {
	if cfg.StageTimeout <= 0 {
		cfg.StageTimeout = DefaultStageTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Pipeline{cfg: cfg}
}

// CheckError is a check that failed, kept apart from the verdict.
type CheckError struct {
	Check string
	Err   error
}

// Decision is the merged outcome of a stage.
type Decision struct {
	Action Action
	// Reply and Reason are set when Action is Tempfail or Reject: what
	// the client is told, and the bounded metric label.
	Reply  *Reply
	Reason string
	Check  string // the check whose result decided a forced action, or "spam"
	Score  float64
	// Symbols are every check's symbols, with the config's scores.
	Symbols []Symbol
	// Headers are the headers to add when the message is accepted.
	Headers []Header
	// LogAttrs are for the decision's mail-log line: the deciding
	// check's when it forced the action, every check's otherwise.
	LogAttrs []any
	Errors   []CheckError
	// Deferred lists, at the recipient stage, the checks that asked to
	// decide at the end of DATA.
	Deferred []Deferral
}

// Refused reports a decision the client must be refused with.
func (d Decision) Refused() bool { return d.Action >= Tempfail }

// SpamReason is the metric label of a reject or tempfail decided by the
// score rather than by one check.
const SpamReason = "spam"

// Conn runs the connection checks.
func (p *Pipeline) Conn(ctx context.Context, c *Conn) Decision {
	if p == nil {
		return Decision{}
	}
	checks := make([]Check, len(p.cfg.Conn))
	for i, c := range p.cfg.Conn {
		checks[i] = c
	}
	return p.merge(p.run(ctx, "conn", checks, func(ctx context.Context, ch Check) Result {
		return ch.(ConnCheck).CheckConn(ctx, c)
	}))
}

// Sender runs the MAIL checks.
func (p *Pipeline) Sender(ctx context.Context, s *Sender) Decision {
	if p == nil {
		return Decision{}
	}
	checks := make([]Check, len(p.cfg.Sender))
	for i, c := range p.cfg.Sender {
		checks[i] = c
	}
	return p.merge(p.run(ctx, "sender", checks, func(ctx context.Context, ch Check) Result {
		return ch.(SenderCheck).CheckSender(ctx, s)
	}))
}

// Rcpt runs the RCPT checks for one recipient. Checks that defer are listed
// in the decision; the session hands them back to Body.
func (p *Pipeline) Rcpt(ctx context.Context, r *Recipient) Decision {
	if p == nil {
		return Decision{}
	}
	checks := make([]Check, len(p.cfg.Rcpt))
	for i, c := range p.cfg.Rcpt {
		checks[i] = c
	}
	results := p.run(ctx, "rcpt", checks, func(ctx context.Context, ch Check) Result {
		return ch.(RcptCheck).CheckRcpt(ctx, r)
	})
	d := p.merge(results)
	for _, nr := range results {
		switch {
		case nr.res.Defer:
			d.Deferred = append(d.Deferred, Deferral{Check: nr.name})
		case nr.res.DeferAfterScore:
			d.Deferred = append(d.Deferred, Deferral{Check: nr.name, AfterScore: true})
		}
	}
	return d
}

// Body decides the message: first the recipient decisions deferred to the
// end of DATA (deferred maps a recipient to them), then, unless those refuse
// the message, the body checks, then, unless those refuse it, the recipient
// decisions deferred until the score is known.
func (p *Pipeline) Body(ctx context.Context, b *Body, deferred map[string][]Deferral) Decision {
	if p == nil {
		return Decision{}
	}
	if d := p.rcptAtData(ctx, b, deferred, false, Decision{}); d.Refused() {
		return d
	}
	checks := make([]Check, len(p.cfg.Body))
	for i, c := range p.cfg.Body {
		checks[i] = c
	}
	d := p.merge(p.run(ctx, "body", checks, func(ctx context.Context, ch Check) Result {
		return ch.(BodyCheck).CheckBody(ctx, b)
	}))
	if !d.Refused() {
		if g := p.rcptAtData(ctx, b, deferred, true, d); g.Refused() {
			g.Score, g.Symbols = d.Score, d.Symbols
			d = g
		}
	}
	if p.cfg.Spam {
		p.spamVerdict(&d)
	}
	if p.cfg.AfterBody != nil {
		p.cfg.AfterBody(ctx, b, d)
	}
	return d
}

// rcptAtData asks each deferring check about its recipients again, now that
// the whole envelope (and, afterScore, the body decision's score and
// symbols) is known. The decision names every recipient refused with the
// winning action ("rcpts" in its log attributes).
func (p *Pipeline) rcptAtData(ctx context.Context, b *Body, deferred map[string][]Deferral, afterScore bool, body Decision) Decision {
	type job struct {
		check RcptCheck
		rcpt  string
	}
	var jobs []job
	for _, rcpt := range b.Rcpts {
		for _, df := range deferred[rcpt] {
			if df.AfterScore != afterScore {
				continue
			}
			for _, c := range p.cfg.Rcpt {
				if c.Name() == df.Check {
					jobs = append(jobs, job{c, rcpt})
				}
			}
		}
	}
	if len(jobs) == 0 {
		return Decision{}
	}
	results := p.runJobs(ctx, len(jobs), func(i int) (string, func(context.Context) Result) {
		j := jobs[i]
		return j.check.Name(), func(ctx context.Context) Result {
			return j.check.CheckRcpt(ctx, &Recipient{Conn: b.Conn, From: b.From, Rcpt: j.rcpt, AtData: true,
				Score: body.Score, Symbols: body.Symbols, Scored: afterScore})
		}
	}, "rcpt")
	d := p.merge(results)
	if d.Refused() {
		var refused []string
		for i, nr := range results {
			if nr.res.Action == d.Action {
				refused = append(refused, jobs[i].rcpt)
			}
		}
		d.LogAttrs = append([]any{"rcpts", refused}, d.LogAttrs...)
	}
	return d
}

// panicError is the result of a check that panicked.
type panicError struct {
	check string
	value any
}

func (e *panicError) Error() string { return fmt.Sprintf("check %s panicked: %v", e.check, e.value) }

// named is one check's result with its name.
type named struct {
	name string
	res  Result
}

// run runs call for every check of a stage concurrently and returns the
// results in the checks' order.
func (p *Pipeline) run(ctx context.Context, stage string, checks []Check, call func(context.Context, Check) Result) []named {
	return p.runJobs(ctx, len(checks), func(i int) (string, func(context.Context) Result) {
		c := checks[i]
		return c.Name(), func(ctx context.Context) Result { return call(ctx, c) }
	}, stage)
}

// runJobs is the runner: every job in its own goroutine under the stage's
// deadline; a panic is contained, counted and logged and becomes an error
// result; a job not done by the deadline is an error result too (its
// goroutine ends when it notices the cancelled context, and its late
// result is dropped).
func (p *Pipeline) runJobs(ctx context.Context, n int, job func(int) (string, func(context.Context) Result), stage string) []named {
	out := make([]named, n)
	if n == 0 {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.StageTimeout)
	defer cancel()
	type done struct {
		i   int
		res Result
	}
	ch := make(chan done, n)
	pending := make([]bool, n)
	for i := 0; i < n; i++ {
		name, fn := job(i)
		out[i].name = name
		pending[i] = true
		go func() {
			start := time.Now()
			defer func() {
				if v := recover(); v != nil {
					metricPanics.WithLabelValues(name).Inc()
					p.cfg.Logger.Error("check panicked", "event", "panic", "check", name, "stage", stage,
						"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
					ch <- done{i, Result{Err: &panicError{check: name, value: v}}}
				}
			}()
			res := fn(ctx)
			metricDuration.WithLabelValues(stage, name).Observe(time.Since(start).Seconds())
			ch <- done{i, res}
		}()
	}
wait:
	for left := n; left > 0; left-- {
		select {
		case d := <-ch:
			out[d.i].res = d.res
			pending[d.i] = false
		case <-ctx.Done():
			for i, still := range pending {
				if still {
					out[i].res = Result{Err: fmt.Errorf("check %s: %w", out[i].name, ctx.Err())}
				}
			}
			break wait
		}
	}
	for _, nr := range out {
		result := "ok"
		var pe *panicError
		switch {
		case nr.res.Err == nil:
		case errors.As(nr.res.Err, &pe):
			result = "panic"
		case errors.Is(nr.res.Err, context.DeadlineExceeded):
			result = "timeout"
		default:
			result = "error"
		}
		metricResults.WithLabelValues(stage, nr.name, result).Inc()
	}
	return out
}

// merge makes one decision of a stage's results: the most severe forced
// action wins (the first check in order among equals); the symbols' scores
// add up, with the config's overrides; a failed check adds an error symbol
// scoring 0 instead of its own symbols; the score's action applies when it
// is more severe than any forced one.
func (p *Pipeline) merge(results []named) Decision {
	var d Decision
	var winner *named
	var allAttrs []any
	allowed := false
	for i := range results {
		nr := &results[i]
		r := nr.res
		if r.Err != nil {
			d.Errors = append(d.Errors, CheckError{Check: nr.name, Err: r.Err})
			d.Symbols = append(d.Symbols, Symbol{Name: ErrorSymbol(nr.name), Score: 0, Detail: truncate(r.Err.Error(), 200)})
		} else {
			for _, s := range r.Symbols {
				if v, ok := p.cfg.Scores[s.Name]; ok {
					s.Score = v
				}
				d.Symbols = append(d.Symbols, s)
				d.Score += s.Score
			}
		}
		if r.Action > Accept && (winner == nil || r.Action > winner.res.Action) {
			winner = nr
		}
		d.Headers = append(d.Headers, r.Headers...)
		allAttrs = append(allAttrs, r.LogAttrs...)
		allowed = allowed || (r.Allow && r.Err == nil)
	}
	scoreAction := p.scoreAction(d.Score)
	if allowed {
		scoreAction = Accept
	}
	switch {
	case winner != nil && winner.res.Action >= scoreAction:
		r := winner.res
		d.Action, d.Check = r.Action, winner.name
		d.Reason = r.Reason
		if d.Reason == "" {
			d.Reason = winner.name
		}
		d.Reply = r.Reply
		if d.Refused() && d.Reply == nil {
			d.Reply = defaultReply(d.Action)
		}
		if d.Refused() {
			d.LogAttrs = r.LogAttrs
		} else {
			d.LogAttrs = allAttrs
		}
	case scoreAction > Accept:
		d.Action, d.Check, d.Reason = scoreAction, SpamReason, SpamReason
		if scoreAction == Reject {
			d.Reply = &Reply{Code: 550, Enhanced: [3]int{5, 7, 1}, Text: fmt.Sprintf("message refused as spam (score %.1f)", d.Score)}
		}
		d.LogAttrs = allAttrs
	default:
		d.LogAttrs = allAttrs
	}
	if d.Refused() {
		d.Headers = nil
	}
	return d
}

// scoreAction is the action the thresholds give a score.
func (p *Pipeline) scoreAction(score float64) Action {
	t := p.cfg.Thresholds
	switch {
	case t.Reject > 0 && score >= t.Reject:
		return Reject
	case t.Quarantine > 0 && score >= t.Quarantine:
		return Quarantine
	case t.Tag > 0 && score >= t.Tag:
		return Tag
	}
	return Accept
}

// ErrorSymbol is the symbol a failed check leaves: CHECK_ERROR.
func ErrorSymbol(check string) string {
	return strings.ToUpper(strings.ReplaceAll(check, "-", "_")) + "_ERROR"
}

func defaultReply(a Action) *Reply {
	if a == Reject {
		return &Reply{Code: 554, Enhanced: [3]int{5, 7, 1}, Text: "message refused"}
	}
	return &Reply{Code: 451, Enhanced: [3]int{4, 3, 0}, Text: "temporary failure, try again later"}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
