package clamav

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// scanPingInterval is how often the node asks clamd whether it is alive,
// for /readyz. Scans themselves never depend on it: each one reaches clamd
// afresh, so mail flows again as soon as clamd is back.
const scanPingInterval = 2 * time.Second

// Health follows clamd's state for the node's readiness: a watcher pings
// clamd, and every scan reports its outcome too (Observe), so /readyz
// follows clamd even while no mail comes in.
type Health struct {
	client *Client
	log    *slog.Logger
	state  atomic.Pointer[healthState]
}

type healthState struct{ err error }

// NewHealth returns the health of clamd as client reaches it.
func NewHealth(client *Client, log *slog.Logger) *Health {
	return &Health{client: client, log: log}
}

// Observe records the outcome of a scan: nil when clamd answered.
func (h *Health) Observe(err error) { h.state.Store(&healthState{err: err}) }

// Ready reports clamd's health as last seen by a ping or a scan.
func (h *Health) Ready() error {
	st := h.state.Load()
	if st == nil {
		return errors.New("clamd not checked yet")
	}
	if st.err != nil {
		return fmt.Errorf("clamd unavailable: %w", st.err)
	}
	return nil
}

// clamdStartGrace is how long after the node starts a clamd that has never
// answered is reported as awaited, at WARN, rather than as down, at ERROR:
// clamd often comes up after mxgate (systemd ordering, the first load of
// the signatures), and that is not a fault.
const clamdStartGrace = 60 * time.Second

// Watch pings clamd until ctx ends. What it logs about clamd is decided by
// clamdHealth.
func (h *Health) Watch(ctx context.Context) {
	t := time.NewTicker(scanPingInterval)
	defer t.Stop()
	health := clamdHealth{start: time.Now(), grace: clamdStartGrace}
	for {
		pctx, cancel := context.WithTimeout(ctx, scanPingInterval)
		err := h.client.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		h.Observe(err)
		if line, ok := health.observe(time.Now(), err); ok {
			args := []any{"event", line.event}
			if err != nil {
				args = append(args, "error", err.Error())
			}
			args = append(args, line.args...)
			h.log.Log(ctx, line.level, line.msg, args...)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// clamdState is what the watcher last reported about clamd.
type clamdState int

const (
	clamdUnreported clamdState = iota // started, nothing said yet
	clamdWaiting                      // never answered, within the grace period: WARN said
	clamdDown                         // ERROR said
	clamdUp                           // answering
)

// clamdHealth turns the watcher's ping results into log lines: one line per
// change, never one per ping. Until clamd has answered once, and for
// grace after start, a failing clamd is awaited (WARN, once); a clamd that
// answered and went away, or that has not answered by the end of grace,
// is down (ERROR, once). A clamd answering again after either is INFO.
type clamdHealth struct {
	start  time.Time
	grace  time.Duration
	everUp bool
	state  clamdState
}

// clamdLine is one log line of the watcher.
type clamdLine struct {
	level slog.Level
	msg   string
	event string
	args  []any
}

// observe records one ping result at now and returns the line to log, if
// any.
func (h *clamdHealth) observe(now time.Time, err error) (clamdLine, bool) {
	if err == nil {
		h.everUp = true
		prev := h.state
		h.state = clamdUp
		if prev == clamdWaiting || prev == clamdDown {
			return clamdLine{level: slog.LevelInfo, msg: "clamd available", event: "clamd_up"}, true
		}
		return clamdLine{}, false
	}
	if !h.everUp && now.Sub(h.start) < h.grace {
		if h.state == clamdWaiting {
			return clamdLine{}, false
		}
		h.state = clamdWaiting
		return clamdLine{level: slog.LevelWarn, msg: "waiting for clamd", event: "clamd_waiting",
			args: []any{"grace", h.grace.String()}}, true
	}
	if h.state == clamdDown {
		return clamdLine{}, false
	}
	h.state = clamdDown
	if !h.everUp {
		return clamdLine{level: slog.LevelError, msg: "clamd unavailable", event: "clamd_down",
			args: []any{"never_answered_for", now.Sub(h.start).Round(time.Second).String()}}, true
	}
	return clamdLine{level: slog.LevelError, msg: "clamd unavailable", event: "clamd_down"}, true
}
