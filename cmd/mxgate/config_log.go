package main

import (
	"io"
	"log/slog"
)

// LogSection sets the mail log's verbosity.
type LogSection struct {
	Level string `yaml:"level"`
}

func (s *LogSection) setDefaults() { s.Level = "info" }

func (s *LogSection) validate(failedKeys) ConfigErrors {
	var errs ConfigErrors
	switch s.Level {
	case "debug", "info", "warn", "error":
	default:
		errs.add("log.level", "%q: want debug, info, warn or error", s.Level)
	}
	return errs
}

// newLogger writes the mail log to w as JSON lines at the section's level.
func (s LogSection) newLogger(w io.Writer) *slog.Logger {
	var lv slog.Level
	switch s.Level {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv}))
}
