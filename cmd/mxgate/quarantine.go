package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/raft"
	"gopkg.in/yaml.v3"

	"github.com/mxgate/mxgate/cluster"
	"github.com/mxgate/mxgate/filter/bayes"
	"github.com/mxgate/mxgate/gateway"
	"github.com/mxgate/mxgate/lists"
	"github.com/mxgate/mxgate/quarantine"
	"github.com/mxgate/mxgate/smarthost"
)

// Quarantine defaults (README, "Quarantine").
const (
	defaultQuarantineLifetime         = 7 * oneDay
	defaultQuarantineRejectedLifetime = oneDay
	defaultQuarantineMaxBytes         = 10 << 30
	quarantineOnFullTempfail          = "tempfail" // 451 4.3.0
	quarantineOnFullReject            = "reject"   // 550 5.7.1
	// quarantineRecoverInterval is how often a node confirms its own
	// unrecorded releases and the leader takes over stale claims.
	quarantineRecoverInterval = 30 * time.Second
	// quarantineExpireInterval is how often a standalone node expires
	// (in a cluster the leader's expiry command does it).
	quarantineExpireInterval = time.Minute
)

// QuarantineSection is where held-back mail goes: spam between
// spam.quarantine and spam.reject, viruses if asked, and a copy of
// rejected spam.
type QuarantineSection struct {
	Enabled          bool     `yaml:"enabled"`
	Lifetime         Duration `yaml:"lifetime"`
	RejectedLifetime Duration `yaml:"rejected_lifetime"` // 0: rejected spam is not kept
	MaxBytes         ByteSize `yaml:"max_bytes"`
	OnFull           string   `yaml:"on_full"`
	Viruses          bool     `yaml:"viruses"`
	// Report, LinkKeyFile and BaseURL are the users' side
	// (quarantine_users.go).
	Report      QuarantineReport `yaml:"report"`
	LinkKeyFile string           `yaml:"link_key_file"`
	BaseURL     string           `yaml:"base_url"`

	linkKey []byte // read from LinkKeyFile by validate
}

func (s *QuarantineSection) setDefaults() {
	*s = QuarantineSection{Enabled: true, Lifetime: Duration(defaultQuarantineLifetime),
		RejectedLifetime: Duration(defaultQuarantineRejectedLifetime), MaxBytes: defaultQuarantineMaxBytes,
		OnFull: quarantineOnFullTempfail}
}

func (s *QuarantineSection) validate(failedKeys) ConfigErrors {
	var errs ConfigErrors
	checkDuration(&errs, "quarantine.lifetime", s.Lifetime, time.Hour, 365*oneDay, "")
	checkDuration(&errs, "quarantine.rejected_lifetime", s.RejectedLifetime, 0, 30*oneDay, " (0 keeps no copy)")
	if s.MaxBytes < 1<<20 {
		errs.add("quarantine.max_bytes", "%d: want at least 1MiB", s.MaxBytes)
	}
	if s.OnFull != quarantineOnFullTempfail && s.OnFull != quarantineOnFullReject {
		errs.add("quarantine.on_full", "%q: want tempfail (451) or reject (550)", s.OnFull)
	}
	errs = append(errs, s.validateUsers()...)
	return errs
}

// ByteSize is a size in bytes: 1048576, or with a unit: 500MB, 10GiB
// (KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB of 1024).
type ByteSize int64

// UnmarshalYAML parses a size.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseByteSize(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return errors.New("want a size such as 1073741824, 500MB or 10GiB")
	}
	*b = ByteSize(v)
	return nil
}

func parseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, err
	}
	mult := map[string]int64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[unit]
	if mult == 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("size %q", s)
	}
	return v * mult, nil
}

// nodeQuarantine is the node's quarantine: its store, how it releases,
// and the adapter the inbound listener keeps messages through.
type nodeQuarantine struct {
	store    quarantine.Store
	releaser *quarantine.Releaser
	keeper   *quarantineKeeper
	users    *quarantineUsers // nil without quarantine.link_key_file
	bayes    *bayes.Check     // nil with Bayes off: report as spam/ham answers 409
	cl       *cluster.Cluster
	close    func() error
}

// openQuarantine opens the replicated store in a cluster, else
// data_dir/quarantine.db.
func openQuarantine(cfg *Config, cl *cluster.Cluster, queue *smarthost.Queue, logger *slog.Logger) (*nodeQuarantine, error) {
	q := &nodeQuarantine{cl: cl, close: func() error { return nil }}
	maxBytes := int64(cfg.Quarantine.MaxBytes)
	if cl != nil {
		q.store = cluster.NewQuarantineStore(cl.Node(), maxBytes)
	} else {
		s, err := quarantine.OpenLocal(filepath.Join(cfg.Node.DataDir, "quarantine.db"), maxBytes)
		if err != nil {
			return nil, err
		}
		q.store, q.close = s, s.Close
	}
	quarantine.ExportMetrics(q.store, maxBytes)
	q.releaser = &quarantine.Releaser{Store: q.store, Node: cfg.Node.Name, Spool: quarantine.QueueSpooler{Queue: queue}, Logger: logger}
	q.keeper = &quarantineKeeper{store: q.store, node: cfg.Node.Name, sec: cfg.Quarantine}
	if err := q.openUsers(cfg, queue, logger); err != nil {
		return nil, err
	}
	return q, nil
}

// run completes interrupted releases (on the leader, or alone, taking over
// stale claims) and, on a standalone node, expires entries.
func (q *nodeQuarantine) run(ctx context.Context, logger *slog.Logger) {
	recoverTick := time.NewTicker(quarantineRecoverInterval)
	defer recoverTick.Stop()
	expire := time.NewTicker(quarantineExpireInterval)
	defer expire.Stop()
	if q.users != nil && q.users.sender != nil {
		go q.users.runReports(ctx, q.cl, logger)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-recoverTick.C:
			takeOver := q.cl == nil || q.cl.Node().State() == raft.Leader
			rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			n, err := q.releaser.Recover(rctx, takeOver)
			cancel()
			if err != nil {
				logger.Warn("completing quarantine releases", "event", "quarantine_release", "completed", n, "error", err.Error())
			}
		case now := <-expire.C:
			if q.cl != nil {
				continue
			}
			n, err := q.store.Expire(ctx, now)
			if err != nil {
				logger.Warn("quarantine expiry failed", "event", "quarantine_expire", "error", err.Error())
			} else if n > 0 {
				logger.Info("expired quarantine entries", "event", "quarantine_expire", "quarantine", n)
			}
		}
	}
}

// quarantineKeeper is the inbound listener's gateway.Quarantine.
type quarantineKeeper struct {
	store quarantine.Store
	node  string
	sec   QuarantineSection
}

var _ gateway.Quarantine = (*quarantineKeeper)(nil)

// Keeps implements gateway.Quarantine.
func (k *quarantineKeeper) Keeps(kind gateway.QuarantineKind) bool {
	switch kind {
	case gateway.KindSpam:
		return true
	case gateway.KindVirus:
		return k.sec.Viruses
	case gateway.KindRejected:
		return k.sec.RejectedLifetime > 0
	}
	return false
}

// Keep implements gateway.Quarantine.
func (k *quarantineKeeper) Keep(ctx context.Context, m *gateway.QuarantinedMessage) error {
	f, err := os.Open(m.Path)
	if err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	defer f.Close()
	lifetime := k.sec.Lifetime.D()
	if m.Kind == gateway.KindRejected {
		lifetime = k.sec.RejectedLifetime.D()
	}
	syms := m.Symbols
	if len(syms) > 100 {
		syms = syms[:100]
	}
	e := quarantine.Entry{
		ID: m.ID, Time: m.Received, Node: k.node, ClientIP: m.ClientIP, Helo: m.Helo, Sender: m.From,
		Recipients: m.Rcpts, Subject: boundText(m.Subject, 400), Score: m.Score, Symbols: syms,
		Reason: quarantine.Reason(m.Kind), Virus: boundText(m.Virus, 200), ExpiresAt: m.Received.Add(lifetime),
	}
	_, err = k.store.Put(ctx, e, io.MultiReader(bytes.NewReader(m.Header), f))
	quarantine.ObserveWrite(e.Reason, err)
	if errors.Is(err, quarantine.ErrFull) && k.sec.OnFull == quarantineOnFullReject {
		return fmt.Errorf("%w: %w", gateway.ErrQuarantineRefuse, err)
	}
	return err
}

// boundText cuts s to at most n bytes of valid UTF-8.
func boundText(s string, n int) string {
	s = strings.ToValidUTF8(s, "")
	for len(s) > n {
		s = strings.ToValidUTF8(s[:n], "")
	}
	return s
}

// quarantineActionRequest is the optional body of the actions: who acts,
// for the X-Quarantine-Released header and the log.
type quarantineActionRequest struct {
	By string `json:"by"`
}

// quarantineShow is the answer of GET /api/v1/quarantine/{id}.
type quarantineShow struct {
	Entry   quarantine.Entry    `json:"entry"`
	Preview *quarantine.Preview `json:"preview,omitempty"`
}

// quarantineAllowed is the answer of POST .../allow.
type quarantineAllowed struct {
	Entry   quarantine.Entry `json:"entry"`
	Allowed lists.Entry      `json:"allowed"`
}

// registerQuarantineAPI serves the quarantine under /api/v1/quarantine,
// every route behind the admin token: list (filters and paging), show (the
// headers and a plain-text preview), raw, release, delete, allow. With a
// link key, the users' page (quarantine_users.go) is served next to it.
func registerQuarantineAPI(m *gateway.AdminMux, q *nodeQuarantine, listStore lists.Store, logger *slog.Logger) {
	admin := gateway.AdminOnly("the quarantine")
	q.registerPages(m, listStore, logger)
	m.HandleAPI("GET /api/v1/quarantine", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := quarantineFilter(r.URL.Query())
		if err != nil {
			gateway.WriteJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
			return
		}
		p, err := q.store.List(r.Context(), f)
		if err != nil {
			quarantineError(w, err)
			return
		}
		gateway.WriteJSON(w, http.StatusOK, p)
	}), admin)
	m.HandleAPI("GET /api/v1/quarantine/{id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e, err := q.store.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			quarantineError(w, err)
			return
		}
		out := quarantineShow{Entry: e}
		if e.Stored > 0 {
			if body, err := q.store.Body(r.Context(), e.ID); err == nil {
				p := quarantine.MakePreview(body)
				body.Close()
				out.Preview = &p
			}
		}
		gateway.WriteJSON(w, http.StatusOK, out)
	}), admin)
	m.HandleAPI("GET /api/v1/quarantine/{id}/raw", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := q.store.Body(r.Context(), r.PathValue("id"))
		if err != nil {
			quarantineError(w, err)
			return
		}
		defer body.Close()
		// Never rendered: a download, whatever the message holds.
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", r.PathValue("id")+".eml"))
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; sandbox")
		if _, err := io.Copy(w, body); err != nil {
			logger.Warn("quarantine download cut short", "event", "quarantine_raw", "quarantine_id", r.PathValue("id"), "error", err.Error())
		}
	}), admin)
	m.HandleAPI("POST /api/v1/quarantine/{id}/release", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		by, ok := actionBy(w, r)
		if !ok {
			return
		}
		e, err := q.releaser.Release(r.Context(), r.PathValue("id"), by)
		if err != nil {
			quarantineError(w, err)
			return
		}
		gateway.WriteJSON(w, http.StatusOK, e)
	}), admin)
	m.HandleAPI("POST /api/v1/quarantine/{id}/report", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var spam bool
		switch as := r.URL.Query().Get("as"); as {
		case "spam":
			spam = true
		case "ham":
		default:
			gateway.WriteJSON(w, http.StatusBadRequest, apiError{Error: fmt.Sprintf("as=%q: want as=spam or as=ham", as)})
			return
		}
		by, ok := actionBy(w, r)
		if !ok {
			return
		}
		e, err := q.report(r.Context(), r.PathValue("id"), by, spam, logger)
		if err != nil {
			if errors.Is(err, errBayesOff) {
				gateway.WriteJSON(w, http.StatusConflict, apiError{Error: err.Error()})
				return
			}
			quarantineError(w, err)
			return
		}
		gateway.WriteJSON(w, http.StatusOK, e)
	}), admin)
	m.HandleAPI("DELETE /api/v1/quarantine/{id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		by, ok := actionBy(w, r)
		if !ok {
			return
		}
		e, err := q.store.Delete(r.Context(), r.PathValue("id"), by, time.Now())
		if err != nil {
			quarantineError(w, err)
			return
		}
		quarantine.ObserveDelete()
		logger.Info("quarantined message deleted", "event", "quarantine_delete", "quarantine_id", e.ID, "by", e.By)
		gateway.WriteJSON(w, http.StatusOK, e)
	}), admin)
	m.HandleAPI("POST /api/v1/quarantine/{id}/allow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		by, ok := actionBy(w, r)
		if !ok {
			return
		}
		e, err := q.store.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			quarantineError(w, err)
			return
		}
		if e.Sender == "" {
			gateway.WriteJSON(w, http.StatusBadRequest, apiError{Error: "the message has the null sender: nothing to allow"})
			return
		}
		le, err := lists.NewEntry(lists.Allow, e.Sender, "allowed from quarantine "+e.ID+" by "+by, time.Now())
		if err != nil {
			gateway.WriteJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
			return
		}
		if err := listStore.Put(r.Context(), le); err != nil {
			gateway.WriteJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error()})
			return
		}
		logger.Info("sender allowed from the quarantine", "event", "admin", "list", string(le.List), "value", le.Value, "quarantine_id", e.ID)
		if e, err = q.releaser.Release(r.Context(), e.ID, by); err != nil && !errors.Is(err, quarantine.ErrReleased) {
			quarantineError(w, err)
			return
		}
		gateway.WriteJSON(w, http.StatusOK, quarantineAllowed{Entry: e, Allowed: le})
	}), admin)
}

var errBayesOff = errors.New("bayes is off on this node (spam.enabled and bayes.enabled): nothing to train; release or rm the message instead")

// report trains Bayes with entry id as spam or ham, then deletes (spam)
// or releases (ham) it. The learning comes first, so that a Bayes store
// that fails leaves the entry as it was; if the entry then cannot be
// deleted or released (another report, a release or a delete won), the
// learning is taken back, so a message is learnt once per entry.
func (q *nodeQuarantine) report(ctx context.Context, id, by string, spam bool, logger *slog.Logger) (quarantine.Entry, error) {
	if q.bayes == nil {
		return quarantine.Entry{}, errBayesOff
	}
	e, err := q.store.Get(ctx, id)
	if err != nil {
		return quarantine.Entry{}, err
	}
	switch e.State {
	case quarantine.StateReleased:
		return quarantine.Entry{}, fmt.Errorf("%w: %s", quarantine.ErrReleased, id)
	case quarantine.StateDeleted:
		return quarantine.Entry{}, fmt.Errorf("%w: %s", quarantine.ErrDeleted, id)
	}
	body, err := q.store.Body(ctx, id)
	if err != nil {
		return quarantine.Entry{}, err
	}
	doc, err := bayes.ParseMessage(body)
	body.Close()
	if err != nil {
		return quarantine.Entry{}, fmt.Errorf("quarantine: reading %s: %w", id, err)
	}
	if err := q.bayes.Learn(ctx, doc, spam); err != nil {
		return quarantine.Entry{}, err
	}
	class := "ham"
	if spam {
		class = "spam"
		e, err = q.store.Delete(ctx, id, by, time.Now())
		if err == nil {
			quarantine.ObserveDelete()
		}
	} else {
		e, err = q.releaser.Release(ctx, id, by)
	}
	if err != nil {
		if uerr := q.bayes.Unlearn(context.WithoutCancel(ctx), doc, spam); uerr != nil {
			logger.Warn("taking back a quarantine report's learning", "event", "quarantine_report_as", "quarantine_id", id, "as", class, "error", uerr.Error())
		}
		return quarantine.Entry{}, err
	}
	logger.Info("quarantined message reported", "event", "quarantine_report_as", "quarantine_id", id, "as", class, "by", by)
	return e, nil
}

// actionBy reads who acts: the request's "by", else the client address.
func actionBy(w http.ResponseWriter, r *http.Request) (string, bool) {
	var req quarantineActionRequest
	if r.ContentLength != 0 {
		if err := json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			gateway.WriteJSON(w, http.StatusBadRequest, apiError{Error: "body: " + err.Error()})
			return "", false
		}
	}
	if by := quarantine.CleanBy(req.By); by != "" {
		return by, true
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	return "admin@" + host, true
}

func quarantineFilter(q url.Values) (quarantine.Filter, error) {
	f := quarantine.Filter{Recipient: q.Get("recipient"), Sender: q.Get("sender"), Before: q.Get("before")}
	var err error
	if f.Reason, err = quarantine.ParseReason(q.Get("reason")); err != nil {
		return f, err
	}
	if f.State, err = quarantine.ParseState(q.Get("state")); err != nil {
		return f, err
	}
	for _, t := range []struct {
		key string
		to  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(t.key); v != "" {
			if *t.to, err = time.Parse(time.RFC3339, v); err != nil {
				return f, fmt.Errorf("%s: want RFC 3339, e.g. 2026-03-02T10:00:00Z", t.key)
			}
		}
	}
	if v := q.Get("limit"); v != "" {
		if f.Limit, err = strconv.Atoi(v); err != nil || f.Limit < 1 || f.Limit > quarantine.MaxLimit {
			return f, fmt.Errorf("limit: want 1 to %d", quarantine.MaxLimit)
		}
	}
	return f, nil
}

// quarantineError answers a store error with its status.
func quarantineError(w http.ResponseWriter, err error) {
	status := http.StatusServiceUnavailable
	switch {
	case errors.Is(err, quarantine.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, quarantine.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, quarantine.ErrClaimed), errors.Is(err, quarantine.ErrReleased),
		errors.Is(err, quarantine.ErrDeleted), errors.Is(err, quarantine.ErrLostClaim):
		status = http.StatusConflict
	}
	gateway.WriteJSON(w, status, apiError{Error: err.Error()})
}

const quarantineUsage = `Usage:
  mxgate quarantine ls      [-config FILE | -http URL] [-recipient A] [-sender A|DOMAIN] [-reason spam|virus|rejected]
                            [-state held|claimed|released|deleted] [-since T] [-until T] [-limit N] [-before ID]
  mxgate quarantine show    [-config FILE | -http URL] [-raw] ID     headers and a text preview; -raw: the message
  mxgate quarantine release [-config FILE | -http URL] [-by NAME] ID  deliver it to its recipients, once
  mxgate quarantine rm      [-config FILE | -http URL] [-by NAME] ID  delete it
  mxgate quarantine allow   [-config FILE | -http URL] [-by NAME] ID  add its sender to the allow list, then release it
  mxgate quarantine report-spam [-config FILE | -http URL] [-by NAME] ID  train Bayes with it as spam, then delete it
  mxgate quarantine report-ham  [-config FILE | -http URL] [-by NAME] ID  train Bayes with it as ham, then release it
Times are RFC 3339 (2026-03-02T10:00:00Z).
`

func cmdQuarantine(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, quarantineUsage)
		return 2
	}
	sub, rest := args[0], args[1:]
	if sub == "help" || sub == "-h" || sub == "--help" {
		fmt.Fprint(stdout, quarantineUsage)
		return 0
	}
	want := map[string]int{"ls": 0, "show": 1, "release": 1, "rm": 1, "allow": 1, "report-spam": 1, "report-ham": 1}
	n, ok := want[sub]
	if !ok {
		fmt.Fprintf(stderr, "mxgate quarantine: unknown command %q\n\n%s", sub, quarantineUsage)
		return 2
	}
	fs := flag.NewFlagSet("quarantine "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/mxgate/mxgate.yaml", "the node's configuration: its listen.http and admin.token_file are used")
	base := fs.String("http", "", "the node's HTTP API, e.g. http://127.0.0.1:8025 (instead of -config)")
	by := fs.String("by", os.Getenv("USER"), "who acts, for the release header and the log")
	raw := fs.Bool("raw", false, "show: print the whole message")
	filter := map[string]*string{}
	for _, k := range []string{"recipient", "sender", "reason", "state", "since", "until", "limit", "before"} {
		filter[k] = fs.String(k, "", "ls: filter by "+k)
	}
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	if fs.NArg() != n {
		fmt.Fprint(stderr, quarantineUsage)
		return 2
	}
	api := apiClient{base: *base}
	if api.base == "" {
		cfg, err := LoadConfig(*cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		api.base = "http://" + dialable(cfg.Listen.HTTP)
		api.token = cfg.Admin.token
	}
	id := url.PathEscape(fs.Arg(0))
	action, _ := json.Marshal(quarantineActionRequest{By: *by})
	var err error
	switch sub {
	case "ls":
		q := url.Values{}
		for k, v := range filter {
			if *v != "" {
				q.Set(k, *v)
			}
		}
		var p quarantine.Page
		if err = api.do(http.MethodGet, "/api/v1/quarantine?"+q.Encode(), &p); err == nil {
			err = printQuarantine(stdout, p)
		}
	case "show":
		if *raw {
			err = api.download("/api/v1/quarantine/"+id+"/raw", stdout)
			break
		}
		var s quarantineShow
		if err = api.do(http.MethodGet, "/api/v1/quarantine/"+id, &s); err == nil {
			printQuarantineShow(stdout, s)
		}
	case "release":
		var e quarantine.Entry
		if err = api.doBody(http.MethodPost, "/api/v1/quarantine/"+id+"/release", action, &e); err == nil {
			fmt.Fprintf(stdout, "released %s to %s (queue id %s)\n", e.ID, strings.Join(e.Recipients, ", "), e.QueueID)
		}
	case "rm":
		var e quarantine.Entry
		if err = api.doBody(http.MethodDelete, "/api/v1/quarantine/"+id, action, &e); err == nil {
			fmt.Fprintf(stdout, "deleted %s\n", e.ID)
		}
	case "report-spam", "report-ham":
		var e quarantine.Entry
		as := strings.TrimPrefix(sub, "report-")
		if err = api.doBody(http.MethodPost, "/api/v1/quarantine/"+id+"/report?as="+as, action, &e); err == nil {
			if as == "spam" {
				fmt.Fprintf(stdout, "learnt %s as spam; deleted\n", e.ID)
			} else {
				fmt.Fprintf(stdout, "learnt %s as ham; released to %s (queue id %s)\n", e.ID, strings.Join(e.Recipients, ", "), e.QueueID)
			}
		}
	case "allow":
		var a quarantineAllowed
		if err = api.doBody(http.MethodPost, "/api/v1/quarantine/"+id+"/allow", action, &a); err == nil {
			fmt.Fprintf(stdout, "added %s to the allow list; released %s (queue id %s)\n", a.Allowed.Value, a.Entry.ID, a.Entry.QueueID)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "mxgate quarantine %s: %v\n", sub, err)
		return 1
	}
	return 0
}

// download copies a raw answer to w.
func (a apiClient) download(path string, w io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(a.base, "/")+path, nil)
	if err != nil {
		return err
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e apiError
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("%s: %s", req.URL, resp.Status)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

func printQuarantine(w io.Writer, p quarantine.Page) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tREASON\tSTATE\tSCORE\tSENDER\tRECIPIENTS\tSUBJECT")
	for _, e := range p.Entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f\t%s\t%s\t%s\n", e.ID, e.Time.Format(time.RFC3339), e.Reason, e.State, e.Score,
			orDash(e.Sender), strings.Join(e.Recipients, ","), terminalSafe(e.Subject, 60))
	}
	if p.Next != "" {
		fmt.Fprintf(tw, "(more: -before %s)\n", p.Next)
	}
	return tw.Flush()
}

func printQuarantineShow(w io.Writer, s quarantineShow) {
	e := s.Entry
	fmt.Fprintf(w, "id:         %s\nreceived:   %s on %s from %s\nsender:     %s\nrecipients: %s\n", e.ID,
		e.Time.Format(time.RFC3339), e.Node, e.ClientIP, orDash(e.Sender), strings.Join(e.Recipients, ", "))
	fmt.Fprintf(w, "reason:     %s %s\nscore:      %.2f %s\nstate:      %s", e.Reason, e.Virus, e.Score, strings.Join(e.Symbols, " "), e.State)
	if e.By != "" {
		fmt.Fprintf(w, " by %s", terminalSafe(e.By, 200))
	}
	fmt.Fprintf(w, "\nexpires:    %s\nsize:       %d bytes (%d stored)\n", e.ExpiresAt.Format(time.RFC3339), e.Size, e.Stored)
	if s.Preview == nil {
		return
	}
	fmt.Fprintln(w)
	for _, h := range s.Preview.Headers {
		fmt.Fprintf(w, "%s: %s\n", terminalSafe(h.Name, 100), terminalSafe(h.Value, 2000))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, s.Preview.Text)
	for _, a := range s.Preview.Attachments {
		fmt.Fprintf(w, "[attachment] %s\n", terminalSafe(a, 500))
	}
}

// terminalSafe keeps a string from driving the terminal (control
// characters, C1 included, dropped) and bounds it.
func terminalSafe(s string, n int) string {
	return boundText(strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f && r < 0xa0 {
			return -1
		}
		return r
	}, s), n)
}
