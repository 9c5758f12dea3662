package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/mxgate/mxgate/filter/clamav"
)

// scanPingInterval is how often the node asks clamd whether it is alive,
// for /readyz. Scans themselves never depend on it: each one reaches clamd
// afresh, so mail flows again as soon as clamd is back.
const scanPingInterval = 2 * time.Second

// scanVerdict is what the scan step decided for one message.
type scanVerdict struct {
	virus  string // infected: the signature name
	header string // header line to add (without CRLF), empty for none
	err    error  // scan failed (not a verdict)
}

// scan streams the spooled body through clamd. A virus is a verdict; a
// scanner that cannot answer is not, and follows clamav.on_error.
func (s *session) scan(ctx context.Context, path, id string) scanVerdict {
	sc := s.srv.cfg.Scanner
	if sc == nil {
		return scanVerdict{}
	}
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return scanVerdict{err: fmt.Errorf("open spooled message: %w", err)}
	}
	defer f.Close()
	res, err := sc.Scan(ctx, f)
	dur := time.Since(start)
	if err != nil {
		kind := "unknown"
		var se *clamav.ScanError
		if errors.As(err, &se) {
			kind = se.Kind
		}
		s.srv.scannerErr.Store(&scannerState{err: err})
		s.log.Warn("virus scan failed", "event", "scan", "session", s.id, "queue_id", id, "result", "error",
			"kind", kind, "error", err.Error(), "duration_ms", dur.Milliseconds(),
			"on_error", map[bool]string{true: "accept", false: "tempfail"}[s.srv.cfg.ScanOnErrorAccept])
		return scanVerdict{err: err, header: fmt.Sprintf("X-Virus-Scanned: not scanned (%s) by mxgate on %s", kind, s.srv.cfg.Hostname)}
	}
	s.srv.scannerErr.Store(&scannerState{})
	if res.Infected {
		s.log.Info("virus found", "event", "scan", "session", s.id, "queue_id", id, "result", "infected",
			"virus", res.Virus, "duration_ms", dur.Milliseconds())
		return scanVerdict{virus: res.Virus}
	}
	s.log.Debug("virus scan clean", "event", "scan", "session", s.id, "queue_id", id, "result", "clean", "duration_ms", dur.Milliseconds())
	return scanVerdict{header: "X-Virus-Scanned: clamav by mxgate on " + s.srv.cfg.Hostname}
}

// logValue is the scan outcome in the accept line of the mail log.
func (v scanVerdict) logValue() string {
	switch {
	case v.err != nil:
		return "not_scanned"
	case v.header == "":
		return "disabled"
	}
	return "clean"
}

type scannerState struct{ err error }

// ScannerReady reports clamd's health as last seen by a ping or a scan; nil
// when scanning is disabled.
func (s *Server) ScannerReady() error {
	if s.cfg.Scanner == nil {
		return nil
	}
	st := s.scannerErr.Load()
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

// WatchScanner pings clamd until ctx ends, so /readyz follows clamd's
// health even while no mail comes in. What it logs about clamd is decided
// by clamdHealth.
func (s *Server) WatchScanner(ctx context.Context) {
	if s.cfg.Scanner == nil {
		return
	}
	t := time.NewTicker(scanPingInterval)
	defer t.Stop()
	health := clamdHealth{start: time.Now(), grace: clamdStartGrace}
	for {
		pctx, cancel := context.WithTimeout(ctx, scanPingInterval)
		err := s.cfg.Scanner.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		s.scannerErr.Store(&scannerState{err: err})
		if line, ok := health.observe(time.Now(), err); ok {
			args := []any{"event", line.event}
			if err != nil {
				args = append(args, "error", err.Error())
			}
			args = append(args, line.args...)
			s.log.Log(ctx, line.level, line.msg, args...)
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
