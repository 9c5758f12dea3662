package main

import (
	"log/slog"
	"time"

	"github.com/mxgate/mxgate/filter/clamav"
)

// clamav.on_error values.
const (
	onErrorTempfail = "tempfail" // answer 451 4.3.0
	onErrorAccept   = "accept"   // deliver with a header saying it was not scanned
)

// ClamAVSection is the virus scanner every message goes through.
type ClamAVSection struct {
	Enabled        bool     `yaml:"enabled"`
	Address        string   `yaml:"address"`
	Timeout        Duration `yaml:"timeout"`
	OnError        string   `yaml:"on_error"`
	MaxConnections int      `yaml:"max_connections"`
	// CacheTTL keeps verdicts by the message's SHA-256 (in Redis when
	// redis.address is set, else in memory); 0s turns the cache off
	// (benchmarks that repeat one body).
	CacheTTL Duration `yaml:"cache_ttl"`
}

func (s *ClamAVSection) setDefaults() {
	*s = ClamAVSection{
		Enabled:        true,
		Address:        clamav.DefaultAddress,
		Timeout:        Duration(clamav.DefaultTimeout),
		OnError:        onErrorTempfail,
		MaxConnections: clamav.DefaultMaxConns,
		CacheTTL:       Duration(clamav.DefaultCacheTTL),
	}
}

func (s *ClamAVSection) validate(failedKeys) ConfigErrors {
	var errs ConfigErrors
	if s.Enabled {
		if _, _, err := clamav.ParseAddress(s.Address); err != nil {
			errs.add("clamav.address", "%v", err)
		}
	}
	if s.OnError != onErrorTempfail && s.OnError != onErrorAccept {
		errs.add("clamav.on_error", "%q: want tempfail (answer 451 when a message cannot be scanned) or accept (deliver it with a header saying it was not scanned)", s.OnError)
	}
	if s.MaxConnections < 1 || s.MaxConnections > 1000 {
		errs.add("clamav.max_connections", "%d: want 1 to 1000 (at most clamd's MaxThreads)", s.MaxConnections)
	}
	checkDuration(&errs, "clamav.timeout", s.Timeout, time.Second, time.Hour, "")
	checkDuration(&errs, "clamav.cache_ttl", s.CacheTTL, 0, 30*oneDay, " (0s: off)")
	return errs
}

// clientConfig is the clamd client's configuration.
func (s ClamAVSection) clientConfig() clamav.Config {
	return clamav.Config{Address: s.Address, Timeout: s.Timeout.D(), MaxConns: s.MaxConnections}
}

// check is the scan as a body check through client; hostname is named in
// X-Virus-Scanned, observe is told every scan's outcome.
func (s ClamAVSection) check(client *clamav.Client, hostname string, observe func(error), logger *slog.Logger) *clamav.Check {
	c := &clamav.Check{Client: client, Hostname: hostname, OnErrorAccept: s.OnError == onErrorAccept, Observe: observe, Logger: logger}
	if s.CacheTTL > 0 {
		c.Cache, c.CacheTTL = clamav.NewMemoryCache(0, nil), s.CacheTTL.D()
	}
	return c
}

// clamavCheck is the scan of the node's listeners: its verdict cache is in
// Redis when redis.address is set (shared by every node), else in memory.
func (c *Config) clamavCheck(client *clamav.Client, observe func(error), logger *slog.Logger) *clamav.Check {
	ch := c.ClamAV.check(client, c.Hostname, observe, logger)
	if ch.Cache != nil && c.Redis.Address != "" {
		ch.Cache = clamav.NewRedisCache(clamav.RedisCacheOptions{Addr: c.Redis.Address})
	}
	return ch
}
