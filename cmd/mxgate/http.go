package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/mxgate/mxgate/gateway"
)

// httpOptions are the HTTP listener's limits: limits.http_connections
// from the file, the timeouts at their production values except where
// MXGATE_HTTP_IDLE_TIMEOUT or MXGATE_HTTP_READ_HEADER_TIMEOUT say
// otherwise. Those are environment variables, not configuration keys, as
// the MXGATE_RAFT_* ones: the defaults suit production, and tests need
// short values.
func httpOptions(cfg *Config, getenv func(string) string, logger *slog.Logger) (gateway.HTTPOptions, error) {
	o := gateway.DefaultHTTPOptions()
	o.MaxConns = cfg.Limits.HTTPConnections
	o.Logger = logger
	for _, e := range []struct {
		name string
		dst  *time.Duration
	}{
		{"MXGATE_HTTP_IDLE_TIMEOUT", &o.IdleTimeout},
		{"MXGATE_HTTP_READ_HEADER_TIMEOUT", &o.ReadHeaderTimeout},
	} {
		v := getenv(e.name)
		if v == "" {
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Millisecond || d > time.Hour {
			return o, fmt.Errorf("%s=%q: want a duration from 10ms to 1h, such as 1s", e.name, v)
		}
		*e.dst = d
	}
	return o, nil
}
