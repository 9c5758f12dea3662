package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mxgate/mxgate/cluster"
	"github.com/mxgate/mxgate/gateway"
	"github.com/mxgate/mxgate/lists"
	"github.com/mxgate/mxgate/quarantine/adminpage"
	"github.com/mxgate/mxgate/quarantine/report"
	"github.com/mxgate/mxgate/quarantine/userpage"
	"github.com/mxgate/mxgate/smarthost"
)

// The users' side of the quarantine (README, "Quarantine"): signed links,
// the page they open, and the daily report.
const (
	// quarantineReportSettle leaves the entries of the last minutes
	// before a report to the next one, so that none falls between two.
	quarantineReportSettle = 10 * time.Minute
	// quarantineReportState is the file, in data_dir, where earlier
	// versions kept the time the last report covered; now the quarantine
	// store keeps it (replicated in a cluster), and the file is only read
	// until the store has a time.
	quarantineReportState = "quarantine-report.json"
	// envReportInterval is a test hook: reports every interval (at least
	// 1s) instead of daily at quarantine.report.at.
	envReportInterval = "MXGATE_QUARANTINE_REPORT_INTERVAL"
)

// QuarantineReport is quarantine.report.
type QuarantineReport struct {
	// At is the local time of the daily report, "HH:MM"; empty: no
	// report.
	At string `yaml:"at"`
}

// validateUsers checks report, link_key_file and base_url, and reads the
// key.
func (s *QuarantineSection) validateUsers() ConfigErrors {
	var errs ConfigErrors
	s.linkKey = nil
	if s.LinkKeyFile != "" {
		key, err := userpage.LoadKey(s.LinkKeyFile)
		if err != nil {
			errs.add("quarantine.link_key_file", "%v", err)
		}
		s.linkKey = key
	}
	if s.Report.At != "" {
		if _, _, err := report.ParseAt(s.Report.At); err != nil {
			errs.add("quarantine.report.at", "%v", err)
		}
		if s.LinkKeyFile == "" {
			errs.add("quarantine.report.at", "the report's links need quarantine.link_key_file (base64 of 32 random bytes, mode 0600, the same on every node)")
		}
	}
	if s.BaseURL != "" {
		u, err := url.Parse(s.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			errs.add("quarantine.base_url", "%q: want http(s)://HOST[:PORT][/PATH], the address users reach this node's HTTP listener at", s.BaseURL)
		}
	}
	return errs
}

// quarantineUsers is the page and the report of a node.
type quarantineUsers struct {
	page     *userpage.Handler
	sender   *report.Sender // nil without quarantine.report.at
	hh, mm   int
	interval time.Duration // the test hook; 0: daily at hh:mm
}

// quarantineBaseURL is quarantine.base_url, else http://HOST:PORT of
// listen.http (the hostname when it listens on every address).
func quarantineBaseURL(cfg *Config) string {
	if cfg.Quarantine.BaseURL != "" {
		return cfg.Quarantine.BaseURL
	}
	host, port, err := net.SplitHostPort(cfg.Listen.HTTP)
	if err != nil {
		return "http://" + cfg.Hostname
	}
	if a, err := netip.ParseAddr(host); host == "" || (err == nil && a.IsUnspecified()) {
		host = cfg.Hostname
	}
	return "http://" + net.JoinHostPort(host, port)
}

// openUsers sets up the page (with a link key) and the report (with
// report.at).
func (q *nodeQuarantine) openUsers(cfg *Config, queue *smarthost.Queue, logger *slog.Logger) error {
	sec := cfg.Quarantine
	if sec.linkKey == nil {
		return nil
	}
	signer, err := userpage.NewSigner(sec.linkKey)
	if err != nil {
		return err
	}
	u := &quarantineUsers{page: &userpage.Handler{Store: q.store, Signer: signer, Release: q.releaser.Release, Logger: logger}}
	q.users = u
	if sec.Report.At == "" {
		return nil
	}
	if u.hh, u.mm, err = report.ParseAt(sec.Report.At); err != nil {
		return err
	}
	settle := quarantineReportSettle
	if v := os.Getenv(envReportInterval); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			return fmt.Errorf("%s=%q: want a duration of at least 1s", envReportInterval, v)
		}
		u.interval, settle = d, time.Second
	}
	domain := cfg.Hostname
	if len(cfg.Domains) > 0 {
		domain = cfg.Domains[0]
	}
	u.sender = &report.Sender{
		Store: q.store,
		Composer: report.Composer{From: "postmaster@" + domain, Hostname: cfg.Hostname,
			Links: userpage.Links{Base: quarantineBaseURL(cfg), Signer: signer}},
		Mailer:          report.QueueMailer{Queue: queue},
		Domains:         cfg.Domains,
		LegacyStatePath: filepath.Join(cfg.Node.DataDir, quarantineReportState),
		Settle:          settle,
		Logger:          logger,
	}
	return nil
}

// runReports sends the report daily at report.at, local time. In a
// cluster only the leader sends, and it records the time it covered
// through Raft (CmdQuarantineReportSent): a new leader sends from the
// same record, so a recipient gets one report per period across a change
// of leader. (A leader that loses office between queueing reports and
// recording the time leaves them to be sent again: twice, never none.)
func (u *quarantineUsers) runReports(ctx context.Context, cl *cluster.Cluster, logger *slog.Logger) {
	for {
		wait := u.interval
		if wait == 0 {
			wait = time.Until(report.Next(time.Now(), u.hh, u.mm))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if cl != nil && cl.Node().State() != raft.Leader {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		n, err := u.sender.Run(rctx, time.Now())
		cancel()
		if err != nil {
			logger.Warn("quarantine report failed", "event", "quarantine_report", "sent", n, "error", err.Error())
		} else if n > 0 {
			logger.Info("quarantine reports queued", "event", "quarantine_report", "sent", n)
		}
	}
}

// registerPages serves the admin page (/admin/quarantine, behind the
// admin token or loopback) and, with a link key, the users' page. Both
// have an allow-sender button: it puts the sender's address (never its
// domain) on the gateway's allow list, for every recipient, then releases.
func (q *nodeQuarantine) registerPages(m *gateway.AdminMux, listStore lists.Store, logger *slog.Logger) {
	allow := func(ctx context.Context, sender, comment string) error {
		if len(comment) > lists.MaxComment {
			comment = comment[:lists.MaxComment]
		}
		le, err := lists.NewEntry(lists.Allow, sender, comment, time.Now())
		if err != nil {
			return err
		}
		if le.Kind != lists.KindAddress {
			return fmt.Errorf("%q is not an address", sender)
		}
		return listStore.Put(ctx, le)
	}
	(&adminpage.Handler{Store: q.store, Release: q.releaser.Release, Allow: allow, Login: m.AdminLogin,
		LoopbackOnly: !m.AdminTokenSet(), Logger: logger}).Register(m)
	if q.users != nil {
		q.users.page.Allow = allow
		q.users.page.Register(m)
	}
}
