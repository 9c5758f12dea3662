package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
)

// levelWriter turns the text lines of Raft's and memberlist's loggers
// ("[ERROR] raft: ...", "[WARN] memberlist: ...") into slog records at the
// matching level, so that an operator filtering on level sees Raft's errors
// as errors. Lines at [INFO] get the level given (memberlist's are routine
// and go to debug); [DEBUG] and [TRACE] go to debug.
type levelWriter struct {
	log       *slog.Logger
	component string
	info      slog.Level
}

var levelPrefixes = []struct {
	prefix string
	level  slog.Level
}{
	{"[ERROR]", slog.LevelError},
	{"[ERR]", slog.LevelError},
	{"[WARN]", slog.LevelWarn},
	{"[DEBUG]", slog.LevelDebug},
	{"[TRACE]", slog.LevelDebug},
}

func (w levelWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		text := strings.TrimSpace(string(line))
		if text == "" {
			continue
		}
		level, found := w.info, false
		for _, lp := range levelPrefixes {
			if rest, ok := strings.CutPrefix(text, lp.prefix); ok {
				level, text, found = lp.level, strings.TrimSpace(rest), true
				break
			}
		}
		if !found {
			text = strings.TrimSpace(strings.TrimPrefix(text, "[INFO]"))
		}
		w.log.Log(context.Background(), level, text, "event", w.component)
	}
	return len(p), nil
}
