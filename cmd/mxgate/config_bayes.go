package main

import (
	"path/filepath"

	"github.com/mxgate/mxgate/filter/bayes"
)

// defaultBayesMinLearns is how many of each class Bayes must have learnt
// before it scores (as rspamd).
const defaultBayesMinLearns = 200

// RedisSection is the shared store of the counters every node learns
// together (Bayes today); empty: each node keeps its own.
type RedisSection struct {
	Address string `yaml:"address"`
}

func (s *RedisSection) setDefaults() {}

func (s *RedisSection) validate(failedKeys) ConfigErrors {
	var errs ConfigErrors
	if s.Address != "" {
		if err := checkHostPort(s.Address); err != nil {
			errs.add("redis.address", "%v", err)
		}
	}
	return errs
}

// BayesSection is the Bayes classifier of spam scoring.
type BayesSection struct {
	Enabled   bool `yaml:"enabled"`
	MinLearns int  `yaml:"min_learns"`
	// Autolearn learns from the verdict of the other checks: spam at a
	// score of 12 or more without Bayes, ham at -0.5 or less (see
	// bayes.Autolearn).
	Autolearn bool `yaml:"autolearn"`
}

func (s *BayesSection) setDefaults() {
	*s = BayesSection{Enabled: true, MinLearns: defaultBayesMinLearns}
}

func (s *BayesSection) validate(failedKeys) ConfigErrors {
	var errs ConfigErrors
	if s.MinLearns < 1 || s.MinLearns > 1_000_000 {
		errs.add("bayes.min_learns", "%d: want 1 to 1000000", s.MinLearns)
	}
	return errs
}

// openBayes is the node's Bayes store: Redis when redis.address is set,
// else data_dir/bayes.db.
func (c *Config) openBayes() (bayes.Store, string, error) {
	if c.Redis.Address != "" {
		return bayes.OpenRedis(bayes.RedisOptions{Addr: c.Redis.Address}), "redis " + c.Redis.Address, nil
	}
	path := filepath.Join(c.Node.DataDir, bayes.BoltFile)
	s, err := bayes.OpenBolt(path)
	if err != nil {
		return nil, "", err
	}
	return s, path, nil
}
