package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/mxgate/mxgate/filter/bayes"
)

const bayesUsage = `Usage:
  mxgate bayes train [-config FILE] [-redis ADDR] [-data-dir DIR] --ham PATH --spam PATH

Learns ham and spam into the Bayes store: Redis at -redis when given, else
DIR/bayes.db (DIR from -data-dir, or node.data_dir of -config). A PATH is a
maildir (cur/ and new/), an mbox file, or a directory of files holding one
message each. Prints the messages learnt and the store's totals.
`

// bayesCommand is `mxgate bayes ...`.
func bayesCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "train" {
		fmt.Fprint(stderr, bayesUsage)
		return 2
	}
	fs := flag.NewFlagSet("bayes train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "configuration file (for node.data_dir)")
	redisAddr := fs.String("redis", "", "Redis address host:port (the cluster's shared store)")
	dataDir := fs.String("data-dir", "", "data directory holding bayes.db (overrides the config's node.data_dir)")
	ham := fs.String("ham", "", "ham: maildir, mbox or directory of messages")
	spam := fs.String("spam", "", "spam: maildir, mbox or directory of messages")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mxgate bayes train: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *ham == "" && *spam == "" {
		fmt.Fprintln(stderr, "mxgate bayes train: give --ham PATH, --spam PATH or both")
		return 2
	}
	store, where, err := openBayesStore(*configPath, *redisAddr, *dataDir)
	if err != nil {
		fmt.Fprintln(stderr, "mxgate bayes train:", err)
		return 1
	}
	defer store.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	check := &bayes.Check{Store: store, Features: bayes.DefaultFeatures}
	for _, c := range []struct {
		path string
		spam bool
		name string
	}{{*ham, false, "ham"}, {*spam, true, "spam"}} {
		if c.path == "" {
			continue
		}
		learnt, skipped := 0, 0
		err := bayes.WalkMessages(c.path, func(name string, msg []byte) error {
			doc, err := bayes.ParseMessage(bytes.NewReader(msg))
			if err != nil {
				skipped++
				fmt.Fprintf(stderr, "mxgate bayes train: skipped %s: %v\n", name, err)
				return nil
			}
			if err := check.Learn(ctx, doc, c.spam); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			learnt++
			return nil
		})
		fmt.Fprintf(stdout, "learnt %d %s from %s", learnt, c.name, c.path)
		if skipped > 0 {
			fmt.Fprintf(stdout, " (%d skipped)", skipped)
		}
		fmt.Fprintln(stdout)
		if err != nil {
			fmt.Fprintln(stderr, "mxgate bayes train:", err)
			return 1
		}
	}
	nham, nspam, err := store.Learned(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "mxgate bayes train:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s now holds %d ham, %d spam\n", where, nham, nspam)
	return 0
}

// openBayesStore opens Redis when an address is given, else the bbolt file
// in the data directory (from -data-dir, or the config's node.data_dir).
func openBayesStore(configPath, redisAddr, dataDir string) (bayes.Store, string, error) {
	var cfg *Config
	if configPath != "" {
		var err error
		if cfg, err = LoadConfig(configPath); err != nil {
			return nil, "", err
		}
		if redisAddr == "" {
			redisAddr = cfg.Redis.Address
		}
	}
	if redisAddr != "" {
		s := bayes.OpenRedis(bayes.RedisOptions{Addr: redisAddr})
		if err := s.Ping(context.Background()); err != nil {
			s.Close()
			return nil, "", err
		}
		return s, "redis " + redisAddr, nil
	}
	if dataDir == "" && cfg != nil {
		dataDir = cfg.Node.DataDir
	}
	if dataDir == "" {
		return nil, "", fmt.Errorf("no store: give -redis ADDR, -data-dir DIR or -config FILE")
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, "", fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dataDir, bayes.BoltFile)
	s, err := bayes.OpenBolt(path)
	if err != nil {
		return nil, "", err
	}
	return s, path, nil
}
