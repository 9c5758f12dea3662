package lists

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/mxgate/mxgate/filter"
)

// CheckName is the lists check's name in the pipeline.
const CheckName = "lists"

// Reason is the mxgate_messages_total label of a blocked sender.
const Reason = "blocklisted"

// Check applies the lists: a block entry refuses at MAIL (a sender check);
// an allow entry makes the message skip spam scoring (a body check that
// sets Result.Allow; viruses are still refused). Trusted clients are not
// checked. A store that cannot be read is an error, never a verdict.
type Check struct {
	Store  Store
	Logger *slog.Logger

	mu      sync.Mutex
	version uint64
	matcher *Matcher
}

// Name is the check's name.
func (c *Check) Name() string { return CheckName }

// current returns the Matcher for the store's current version.
func (c *Check) current(ctx context.Context) (*Matcher, error) {
	v, err := c.Store.Version(ctx)
	if err != nil {
		return nil, fmt.Errorf("lists: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.matcher != nil && v == c.version {
		return c.matcher, nil
	}
	es, err := c.Store.Entries(ctx)
	if err != nil {
		return nil, fmt.Errorf("lists: %w", err)
	}
	c.matcher, c.version = Compile(es), v
	return c.matcher, nil
}

// CheckSender refuses a blocked client or sender.
func (c *Check) CheckSender(ctx context.Context, s *filter.Sender) filter.Result {
	if s.Conn.Trusted {
		return filter.Result{}
	}
	m, err := c.current(ctx)
	if err != nil {
		return filter.Result{Err: err}
	}
	e, ok := m.Match(Block, s.Conn.IP, s.From)
	if !ok {
		return filter.Result{}
	}
	what := "sender"
	if e.Kind == KindNetwork {
		what = "client address"
	}
	return filter.Result{
		Symbols:  []filter.Symbol{{Name: "BLOCKLISTED", Detail: e.Value}},
		Action:   filter.Reject,
		Reason:   Reason,
		Reply:    &filter.Reply{Code: 554, Enhanced: [3]int{5, 7, 1}, Text: what + " is on the block list"},
		LogAttrs: []any{"list_entry", e.Value},
	}
}

// CheckBody lets an allowed client or sender skip spam scoring.
func (c *Check) CheckBody(ctx context.Context, b *filter.Body) filter.Result {
	if b.Conn.Trusted {
		return filter.Result{}
	}
	m, err := c.current(ctx)
	if err != nil {
		return filter.Result{Err: err}
	}
	e, ok := m.Match(Allow, b.Conn.IP, b.From)
	if !ok {
		return filter.Result{}
	}
	return filter.Result{
		Symbols:  []filter.Symbol{{Name: "ALLOWLISTED", Detail: e.Value}},
		Allow:    true,
		LogAttrs: []any{"list_entry", e.Value},
	}
}
