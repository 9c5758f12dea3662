// Package rspamd adds a running rspamd to mxgate's filter, for operators
// who already run one: the spooled message is sent to rspamd's /checkv2
// HTTP endpoint and rspamd's score becomes one scored symbol, RSPAMD, in
// mxgate's decision (with rspamd's strongest symbols in its detail). rspamd
// advises; mxgate's levels decide. A failure of rspamd is an error symbol
// scoring 0, never a verdict. The README's "Spam filtering" section shows
// the configuration.
package rspamd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/mxgate/mxgate/filter"
)

// CheckName is the check's name; Symbol the symbol it emits.
const (
	CheckName = "rspamd"
	Symbol    = "RSPAMD"
)

// DefaultTimeout bounds one request.
const DefaultTimeout = 10 * time.Second

// maxReply bounds rspamd's answer read.
const maxReply = 1 << 20

// Config configures the check.
type Config struct {
	// URL is rspamd's normal worker, e.g. http://127.0.0.1:11333.
	URL string
	// Password is rspamd's controller/normal worker password, if set.
	Password string
	// Weight multiplies rspamd's score (default 1).
	Weight  float64
	Timeout time.Duration
	Client  *http.Client // nil: one with Timeout
	Logger  *slog.Logger
}

// Check asks rspamd.
type Check struct {
	cfg      Config
	endpoint string
}

// New checks the config.
func New(cfg Config) (*Check, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("rspamd: url %q: want http://host:port", cfg.URL)
	}
	if cfg.Weight == 0 {
		cfg.Weight = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Check{cfg: cfg, endpoint: strings.TrimSuffix(u.String(), "/") + "/checkv2"}, nil
}

// Name is the check's name.
func (c *Check) Name() string { return CheckName }

// reply is the part of rspamd's /checkv2 answer mxgate reads.
type reply struct {
	Score   float64 `json:"score"`
	Action  string  `json:"action"`
	Symbols map[string]struct {
		Name  string  `json:"name"`
		Score float64 `json:"score"`
	} `json:"symbols"`
	Error string `json:"error"`
}

// CheckBody sends the message to rspamd.
func (c *Check) CheckBody(ctx context.Context, b *filter.Body) filter.Result {
	if b.Conn.Trusted {
		return filter.Result{}
	}
	r, err := c.ask(ctx, b)
	if err != nil {
		metricRequests.WithLabelValues("error").Inc()
		c.cfg.Logger.Warn("rspamd check failed", "event", "rspamd", "session", b.Conn.ID, "queue_id", b.Msg.QueueID, "error", err.Error())
		return filter.Result{Err: err}
	}
	metricRequests.WithLabelValues("ok").Inc()
	return filter.Result{
		Symbols:  []filter.Symbol{{Name: Symbol, Score: r.Score * c.cfg.Weight, Detail: topSymbols(r, 8)}},
		LogAttrs: []any{"rspamd_score", r.Score, "rspamd_action", r.Action},
	}
}

func (c *Check) ask(ctx context.Context, b *filter.Body) (*reply, error) {
	msg, err := b.Msg.Open()
	if err != nil {
		return nil, err
	}
	defer msg.Close()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, msg)
	if err != nil {
		return nil, fmt.Errorf("rspamd: %w", err)
	}
	req.ContentLength = b.Msg.Size
	req.Header.Set("IP", b.Conn.IP.String())
	if b.Conn.Helo != "" {
		req.Header.Set("Helo", b.Conn.Helo)
	}
	req.Header.Set("From", b.From)
	for _, r := range b.Rcpts {
		req.Header.Add("Rcpt", r)
	}
	req.Header.Set("Queue-Id", b.Msg.QueueID)
	if c.cfg.Password != "" {
		req.Header.Set("Password", c.cfg.Password)
	}
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("rspamd: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return nil, fmt.Errorf("rspamd: read the reply: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("rspamd: %s: %.200s", resp.Status, body)
	}
	var r reply
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("rspamd: reply: %w", err)
	}
	if r.Error != "" {
		return nil, errors.New("rspamd: " + r.Error)
	}
	return &r, nil
}

// topSymbols names rspamd's n strongest symbols: "R_SPF_FAIL=1.5 ...".
func topSymbols(r *reply, n int) string {
	type sym struct {
		name  string
		score float64
	}
	var all []sym
	for k, s := range r.Symbols {
		name := s.Name
		if name == "" {
			name = k
		}
		all = append(all, sym{name, s.Score})
	}
	sort.Slice(all, func(i, j int) bool {
		ai, aj := all[i].score, all[j].score
		if ai < 0 {
			ai = -ai
		}
		if aj < 0 {
			aj = -aj
		}
		if ai != aj {
			return ai > aj
		}
		return all[i].name < all[j].name
	})
	var b strings.Builder
	for i, s := range all {
		if i == n {
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%g", s.name, s.score)
	}
	return b.String()
}
