package gateway

import (
	"context"
	"errors"
	"fmt"
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

// WatchScanner pings clamd until ctx ends, so /readyz follows clamd's
// health even while no mail comes in.
func (s *Server) WatchScanner(ctx context.Context) {
	if s.cfg.Scanner == nil {
		return
	}
	t := time.NewTicker(scanPingInterval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, scanPingInterval)
		err := s.cfg.Scanner.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		prev := s.scannerErr.Swap(&scannerState{err: err})
		if (prev == nil || prev.err == nil) != (err == nil) {
			if err != nil {
				s.log.Error("clamd unavailable", "event", "clamd_down", "error", err.Error())
			} else {
				s.log.Info("clamd available", "event", "clamd_up")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
