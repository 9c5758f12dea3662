package clamav

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/mxgate/mxgate/filter"
)

// CheckName is the check's name in the pipeline's metrics and symbols.
const CheckName = "clamav"

// Check is the virus scan as a body check: the spooled message is streamed
// to clamd. A virus is refused; a scanner that cannot answer is not a
// verdict and follows clamav.on_error (tempfail, or accept with a header
// saying the message was not scanned).
type Check struct {
	Client   *Client
	Hostname string // named in the X-Virus-Scanned header
	// OnErrorAccept delivers a message clamd could not scan instead of
	// answering 451 4.3.0.
	OnErrorAccept bool
	// Observe, when set, is told the outcome of every scan (nil error
	// for an answer from clamd), for the node's readiness.
	Observe func(error)
	// Cache, with CacheTTL above 0, keeps verdicts by the SHA-256 of the
	// message (clamav.cache_ttl): the same content is scanned once.
	Cache    VerdictCache
	CacheTTL time.Duration
	Logger   *slog.Logger
}

// Name is the check's name.
func (c *Check) Name() string { return CheckName }

// Reasons the check refuses with: the mxgate_messages_total labels.
const (
	ReasonVirus     = "virus"
	ReasonScanError = "scan_error"
)

// CheckBody scans the message.
func (c *Check) CheckBody(ctx context.Context, b *filter.Body) filter.Result {
	start := time.Now()
	key, res, cached := c.cached(ctx, b)
	var err error
	if !cached {
		var r io.ReadCloser
		r, err = b.Msg.Open()
		if err != nil {
			return c.failed(b, err, "source", time.Since(start))
		}
		res, err = c.Client.Scan(ctx, r)
		r.Close()
		if err == nil && key != "" {
			if perr := c.Cache.Put(ctx, key, res, c.CacheTTL); perr != nil {
				metricCache.WithLabelValues("error").Inc()
				c.Logger.Warn("clamav verdict cache", "event", "scan_cache_error", "queue_id", b.Msg.QueueID, "error", perr.Error())
			}
		}
	}
	dur := time.Since(start)
	if err != nil {
		kind := "unknown"
		var se *ScanError
		if errors.As(err, &se) {
			kind = se.Kind
		}
		c.observe(err)
		return c.failed(b, err, kind, dur)
	}
	if !cached {
		c.observe(nil)
	}
	if res.Infected {
		c.Logger.Info("virus found", "event", "scan", "session", b.Conn.ID, "queue_id", b.Msg.QueueID, "result", "infected",
			"virus", res.Virus, "duration_ms", dur.Milliseconds(), "cached", cached)
		return filter.Result{
			Symbols:  []filter.Symbol{{Name: "CLAMAV_VIRUS", Detail: res.Virus}},
			Action:   filter.Reject,
			Reason:   ReasonVirus,
			Reply:    &filter.Reply{Code: 554, Enhanced: [3]int{5, 7, 1}, Text: "message refused, virus found: " + res.Virus},
			LogAttrs: []any{"virus", res.Virus},
		}
	}
	c.Logger.Debug("virus scan clean", "event", "scan", "session", b.Conn.ID, "queue_id", b.Msg.QueueID, "result", "clean",
		"duration_ms", dur.Milliseconds(), "cached", cached)
	return filter.Result{
		Headers:  []filter.Header{{Name: "X-Virus-Scanned", Value: "clamav by mxgate on " + c.Hostname}},
		LogAttrs: []any{"virus_scan", "clean"},
	}
}

// failed is the result of a scan that gave no verdict.
func (c *Check) failed(b *filter.Body, err error, kind string, dur time.Duration) filter.Result {
	onError := "tempfail"
	if c.OnErrorAccept {
		onError = "accept"
	}
	c.Logger.Warn("virus scan failed", "event", "scan", "session", b.Conn.ID, "queue_id", b.Msg.QueueID, "result", "error",
		"kind", kind, "error", err.Error(), "duration_ms", dur.Milliseconds(), "on_error", onError)
	res := filter.Result{Err: fmt.Errorf("scan: %w", err)}
	if c.OnErrorAccept {
		res.Headers = []filter.Header{{Name: "X-Virus-Scanned", Value: fmt.Sprintf("not scanned (%s) by mxgate on %s", kind, c.Hostname)}}
		res.LogAttrs = []any{"virus_scan", "not_scanned"}
		return res
	}
	// Scanner trouble is not a verdict: the sender keeps the message and
	// retries (never 250 unscanned, never 5xx).
	res.Action = filter.Tempfail
	res.Reason = ReasonScanError
	res.Reply = &filter.Reply{Code: 451, Enhanced: [3]int{4, 3, 0}, Text: "message could not be scanned for viruses, try again later"}
	res.LogAttrs = []any{"error", err.Error()}
	return res
}

// cached looks the message up in the verdict cache; key is "" when the
// cache is off or the message could not be hashed (it is scanned then).
func (c *Check) cached(ctx context.Context, b *filter.Body) (key string, res Result, ok bool) {
	if c.Cache == nil || c.CacheTTL <= 0 {
		return "", Result{}, false
	}
	r, err := b.Msg.Open()
	if err != nil {
		return "", Result{}, false
	}
	key, err = ContentKey(r)
	r.Close()
	if err != nil {
		return "", Result{}, false
	}
	res, ok, err = c.Cache.Get(ctx, key)
	switch {
	case err != nil:
		metricCache.WithLabelValues("error").Inc()
		c.Logger.Warn("clamav verdict cache", "event", "scan_cache_error", "queue_id", b.Msg.QueueID, "error", err.Error())
		return key, Result{}, false
	case ok:
		metricCache.WithLabelValues("hit").Inc()
	default:
		metricCache.WithLabelValues("miss").Inc()
	}
	return key, res, ok
}

func (c *Check) observe(err error) {
	if c.Observe != nil {
		c.Observe(err)
	}
}
