// Command mxgate runs a node of the mxgate mail gateway (serve) and checks
// its configuration (check-config).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mxgate/mxgate/cluster"
	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/filter/bayes"
	"github.com/mxgate/mxgate/filter/clamav"
	"github.com/mxgate/mxgate/gateway"
	"github.com/mxgate/mxgate/greylist"
	"github.com/mxgate/mxgate/internal/dns"
	"github.com/mxgate/mxgate/smarthost"
)

// greylistWriteTimeout bounds a replicated greylist write: an election
// takes a second or two, and past that the RCPT is answered with
// greylisting failed open rather than keep the client waiting.
const greylistWriteTimeout = 2 * time.Second

// spoolCheckInterval is how often the spool's free space and writability
// are checked for /readyz.
const spoolCheckInterval = 2 * time.Second

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `mxgate: a clustered spam and virus filtering mail gateway

Usage:
  mxgate serve -config FILE          run a node
  mxgate check-config -config FILE   validate a configuration file; one line per problem
  mxgate lists ls|add|rm              the allow and block lists, through a node's HTTP API
  mxgate quarantine ls|show|release|rm|allow|report-spam|report-ham
                                     the quarantine, through a node's HTTP API
  mxgate bayes train -config FILE --ham DIR --spam DIR
                                     teach Bayes from maildirs, mboxes or folders of messages
  mxgate cluster members|status|remove|tls-init
                                     the cluster, through a node's HTTP API (see mxgate cluster help)
  mxgate version                     print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return cmdServe(args[1:], stderr)
	case "check-config":
		return cmdCheckConfig(args[1:], stdout, stderr)
	case "cluster":
		return cmdCluster(args[1:], stdout, stderr)
	case "lists":
		return cmdLists(args[1:], stdout, stderr)
	case "quarantine":
		return cmdQuarantine(args[1:], stdout, stderr)
	case "bayes":
		return bayesCommand(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "mxgate", version)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "mxgate: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/mxgate/mxgate.yaml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mxgate %s: unexpected argument %q\n", name, fs.Arg(0))
		return "", false
	}
	return *path, true
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("check-config", args, stderr)
	if !ok {
		return 2
	}
	if _, err := LoadConfig(path); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return 0
}

func cmdServe(args []string, stderr io.Writer) int {
	path, ok := configFlag("serve", args, stderr)
	if !ok {
		return 2
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	logger := cfg.Log.newLogger(stderr).With("node", cfg.Node.Name)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, logger); err != nil {
		logger.Error("mxgate stopped", "event", "fatal", "error", err.Error())
		return 1
	}
	return 0
}

// serve wires the node together and runs it until ctx is cancelled.
func serve(ctx context.Context, cfg *Config, logger *slog.Logger) error {
	if err := os.MkdirAll(cfg.Node.DataDir, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	resolver, err := dns.New(dns.Options{Server: cfg.DNS.Resolver, DNSSEC: cfg.DNS.DNSSEC})
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	queue, err := smarthost.Open(cfg.smarthostConfig(logger, resolver))
	if err != nil {
		return fmt.Errorf("open spool: %w", err)
	}
	// Deferred first, so it runs last: after the queue runner has stopped.
	defer func() {
		if err := queue.Close(); err != nil {
			logger.Error("close spool", "event", "spool_error", "error", err.Error())
		}
	}()
	tlsConf, err := cfg.TLS.tlsConfig(cfg.Node.DataDir, cfg.Hostname)
	if err != nil {
		return err
	}
	var scanner *clamav.Client
	if cfg.ClamAV.Enabled {
		scanner, err = clamav.New(cfg.ClamAV.clientConfig())
		if err != nil {
			return fmt.Errorf("clamav: %w", err)
		}
	} else {
		logger.Warn("virus scanning is disabled (clamav.enabled: false)", "event", "config")
	}
	var cl *cluster.Cluster
	if cfg.clustered {
		cl, err = startCluster(cfg, logger)
		if err != nil {
			return err
		}
		// Deferred before the gateway's shutdown, so it runs after it:
		// sessions still in progress may write greylist state.
		defer func() {
			if err := cl.Shutdown(); err != nil {
				logger.Warn("cluster shutdown", "event", "cluster_stop", "error", err.Error())
			}
		}()
	}
	var grey *greylist.Greylister
	if cfg.Greylist.Enabled {
		var store greylist.Store
		if cl != nil {
			// Replicated: reads from this node's copy, writes committed by
			// a majority. Without quorum a write fails after
			// greylistWriteTimeout and the greylister fails open.
			cs := cluster.NewGreylistStore(cl.Node())
			cs.WriteTimeout = greylistWriteTimeout
			store = cs
		} else {
			ms, err := greylist.OpenMemoryStore(filepath.Join(cfg.Node.DataDir, "greylist.json"), logger)
			if err != nil {
				return fmt.Errorf("greylist: %w", err)
			}
			defer func() {
				if err := ms.Close(); err != nil {
					logger.Error("greylist store", "event", "greylist_error", "error", err.Error())
				}
			}()
			go ms.Run(ctx, time.Minute)
			store = ms
		}
		grey = greylist.New(cfg.Greylist.greylistConfig(), store)
	}
	listStore, err := openLists(cfg, cl)
	if err != nil {
		return err
	}
	gw := gateway.New(cfg.gatewayConfig(tlsConf, logger), queue)
	var clamdHealth *clamav.Health
	if scanner != nil {
		clamdHealth = clamav.NewHealth(scanner, logger)
	}
	var extra []filter.BodyCheck
	var bayesCheck *bayes.Check
	if cfg.Spam.Enabled && cfg.Bayes.Enabled {
		store, where, err := cfg.openBayes()
		if err != nil {
			return fmt.Errorf("bayes: %w", err)
		}
		defer store.Close()
		logger.Info("bayes store", "event", "config", "store", where, "min_learns", cfg.Bayes.MinLearns)
		bayesCheck = &bayes.Check{Store: store, Features: bayes.DefaultFeatures, MinLearns: int64(cfg.Bayes.MinLearns), Logger: logger}
		extra = append(extra, bayesCheck)
	}
	inbound, relay, err := cfg.policies(checkDeps{resolver: resolver, scanner: scanner, health: clamdHealth, grey: grey,
		lists: listStore, extra: extra, logger: logger})
	if err != nil {
		return err
	}
	var quar *nodeQuarantine
	if cfg.Quarantine.Enabled {
		if quar, err = openQuarantine(cfg, cl, queue, logger); err != nil {
			return fmt.Errorf("quarantine: %w", err)
		}
		defer quar.close()
		quar.bayes = bayesCheck
		inbound.Quarantine = quar.keeper
	}
	for _, l := range []struct {
		addr   string
		policy gateway.Policy
	}{{cfg.Listen.Inbound, inbound}, {cfg.Listen.Relay, relay}} {
		if l.addr == "" {
			continue
		}
		if err := gw.Listen(l.policy, l.addr); err != nil {
			return err
		}
	}
	httpOpts, err := httpOptions(cfg, os.Getenv, logger)
	if err != nil {
		return err
	}
	httpLn, err := net.Listen("tcp", cfg.Listen.HTTP)
	if err != nil {
		return fmt.Errorf("listen http on %s: %w", cfg.Listen.HTTP, err)
	}
	// Like Postfix's queue_minfree: room for one and a half messages of
	// the largest size, else the node says it is not ready.
	spoolMon := smarthost.NewSpoolMonitor(queue, uint64(cfg.Limits.MaxMessageBytes)*3/2)
	httpMux := gateway.NewAdminMux(cfg.Admin.token, []gateway.ReadinessProbe{
		{Name: "smtp", Ready: func() error {
			if !gw.Ready() {
				return errors.New("listeners not serving")
			}
			return nil
		}},
		{Name: "clamd", Ready: func() error {
			if clamdHealth == nil {
				return nil // scanning disabled
			}
			return clamdHealth.Ready()
		}},
		{Name: "spool", Ready: func() error {
			if !queue.Ready() {
				return errors.New("queue not running")
			}
			return spoolMon.Ready()
		}},
	})
	registerClusterAPI(httpMux, cl, logger)
	registerListsAPI(httpMux, listStore, logger)
	if quar != nil {
		registerQuarantineAPI(httpMux, quar, listStore, logger)
	}
	httpSrv := gateway.NewHTTPServer(httpLn, httpMux, httpOpts)

	qctx, qcancel := context.WithCancel(context.Background())
	qdone := make(chan error, 1)
	go func() { qdone <- queue.Run(qctx) }()
	if clamdHealth != nil {
		go clamdHealth.Watch(qctx)
	}
	go spoolMon.Run(qctx, spoolCheckInterval)
	if quar != nil {
		go quar.run(qctx, logger)
	}
	gwdone := make(chan error, 1)
	go func() { gwdone <- gw.Serve() }()
	go func() {
		if err := httpSrv.Serve(); err != nil {
			logger.Error("http listener stopped", "event", "http_error", "error", err.Error())
		}
	}()
	var addrs []string
	for _, a := range gw.Addrs() {
		addrs = append(addrs, a.String())
	}
	logger.Info("mxgate started", "event", "start", "version", version, "smtp", strings.Join(addrs, ","),
		"http", httpSrv.Addr().String(), "queued", queue.Len())

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down", "event", "stop")
	case runErr = <-gwdone:
		logger.Error("smtp listener failed", "event", "fatal", "error", fmt.Sprint(runErr))
	case runErr = <-qdone:
		logger.Error("queue runner stopped", "event", "fatal", "error", fmt.Sprint(runErr))
		qdone <- runErr
	}
	sctx, scancel := context.WithTimeout(context.Background(), cfg.Limits.ShutdownGraceTime.D())
	defer scancel()
	gw.Shutdown(sctx)
	qcancel()
	if err := <-qdone; err != nil && !errors.Is(err, context.Canceled) && runErr == nil {
		runErr = err
	}
	if err := httpSrv.Shutdown(sctx); err != nil {
		logger.Warn("http shutdown", "event", "stop", "error", err.Error())
	}
	return runErr
}
