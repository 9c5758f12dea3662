package quarantine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/mxgate/mxgate/smarthost"
)

// Spooler puts a released message into this node's delivery queue,
// durably (fsynced), and returns its queue id. It must not commit once
// ctx is done: the claim it spools under may then be taken over.
type Spooler interface {
	Spool(ctx context.Context, m Spooled) (queueID string, err error)
}

// Spooled is a released message on its way to the delivery queue.
type Spooled struct {
	Entry Entry
	// Header goes before the stored message (X-Quarantine-Released).
	Header []byte
	// Body is the message as stored: mxgate's headers and the client's.
	Body io.Reader
}

// QueueSpooler spools into a smarthost queue, so that a released message
// goes straight to delivery without being filtered again.
type QueueSpooler struct {
	Queue *smarthost.Queue
}

// ListenerReleased is the envelope's listener of released messages.
const ListenerReleased = "quarantine"

// Spool implements Spooler.
func (s QueueSpooler) Spool(ctx context.Context, m Spooled) (string, error) {
	d, err := s.Queue.NewDraft()
	if err != nil {
		return "", fmt.Errorf("quarantine: spooling %s: %w", m.Entry.ID, err)
	}
	defer d.Abort() // a no-op once committed
	if _, err := io.Copy(d, m.Body); err != nil {
		return "", fmt.Errorf("quarantine: spooling %s: %w", m.Entry.ID, err)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("quarantine: spooling %s: %w", m.Entry.ID, err)
	}
	env := smarthost.Envelope{
		From:       m.Entry.Sender,
		Rcpts:      append([]string(nil), m.Entry.Recipients...),
		ReceivedAt: m.Entry.Time,
		ClientIP:   m.Entry.ClientIP,
		Helo:       m.Entry.Helo,
		Listener:   ListenerReleased,
		Prepend:    m.Header,
	}
	if err := s.Queue.Commit(d, env); err != nil {
		return "", fmt.Errorf("quarantine: spooling %s: %w", m.Entry.ID, err)
	}
	return d.ID(), nil
}

// Releaser releases quarantined messages from one node: claim, spool,
// confirm.
type Releaser struct {
	Store  Store
	Node   string // this node's name, the claimant
	Spool  Spooler
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time

	mu sync.Mutex
	// unconfirmed are releases spooled here whose Confirm failed (no
	// quorum): Recover confirms them, so that no other node takes the
	// claim over and spools the message again.
	unconfirmed map[string]ConfirmRequest
}

func (r *Releaser) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Releaser) log() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// ReleasedHeader is the header line added to a released message.
func ReleasedHeader(by string, at time.Time) []byte {
	if by = CleanBy(by); by == "" {
		by = "unknown"
	}
	return fmt.Appendf(nil, "X-Quarantine-Released: by %s at %s\r\n", by, at.UTC().Format(time.RFC1123Z))
}

// Release releases entry id towards its recipients, for by. It returns
// ErrClaimed while another node is releasing it, ErrReleased once it was.
func (r *Releaser) Release(ctx context.Context, id, by string) (Entry, error) {
	at := r.now()
	e, err := r.Store.Claim(ctx, ClaimRequest{ID: id, Node: r.Node, By: by, At: at, Token: newToken()})
	if err != nil {
		return Entry{}, err
	}
	return r.complete(ctx, e)
}

// complete spools a message this node has claimed and confirms it.
func (r *Releaser) complete(ctx context.Context, e Entry) (Entry, error) {
	claim := UnclaimRequest{ID: e.ID, Node: r.Node, ClaimedAt: e.ClaimedAt}
	// Past half the claim timeout the claim could be taken over before
	// the confirm lands: better to give up and let it be released again.
	sctx, cancel := context.WithTimeout(ctx, ClaimTimeout/2)
	defer cancel()
	body, err := r.Store.Body(sctx, e.ID)
	var qid string
	if err == nil {
		qid, err = r.Spool.Spool(sctx, Spooled{Entry: e, Header: ReleasedHeader(e.By, e.ClaimedAt), Body: body})
		body.Close()
	}
	if err != nil {
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer ucancel()
		if uerr := r.Store.Unclaim(uctx, claim); uerr != nil {
			r.log().Warn("giving up a quarantine claim failed; it will be taken over", "event", "quarantine_release",
				"quarantine_id", e.ID, "error", uerr.Error())
		}
		return Entry{}, fmt.Errorf("quarantine: releasing %s: %w", e.ID, err)
	}
	conf := ConfirmRequest{ID: e.ID, Node: r.Node, ClaimedAt: e.ClaimedAt, At: r.now(), QueueID: qid}
	// The message is in the queue now: the confirm must land, whatever
	// the caller's context.
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer ccancel()
	done, err := r.Store.Confirm(cctx, conf)
	if err != nil && !IsRefusal(err) {
		r.mu.Lock()
		if r.unconfirmed == nil {
			r.unconfirmed = map[string]ConfirmRequest{}
		}
		r.unconfirmed[e.ID] = conf
		r.mu.Unlock()
		r.log().Warn("quarantined message spooled, its release not yet recorded; retrying", "event", "quarantine_release",
			"quarantine_id", e.ID, "queue_id", qid, "error", err.Error())
		metricActions.WithLabelValues("released").Inc()
		e.State, e.QueueID = StateReleased, qid
		return e, nil
	}
	if err != nil {
		// Our claim was taken over while we spooled: both copies are
		// queued. Say so loudly; it takes a node stalled for a minute.
		r.log().Error("quarantine claim lost after spooling: the message may be delivered twice", "event", "quarantine_release",
			"quarantine_id", e.ID, "queue_id", qid, "error", err.Error())
		return Entry{}, fmt.Errorf("quarantine: releasing %s: %w", e.ID, err)
	}
	metricActions.WithLabelValues("released").Inc()
	r.log().Info("quarantined message released", "event", "quarantine_release", "quarantine_id", e.ID,
		"queue_id", qid, "by", e.By, "from", e.Sender, "rcpts", e.Recipients)
	return done, nil
}

// Recover confirms this node's releases whose confirm failed, and, with
// takeOver (on the leader, or a standalone node), completes releases whose
// claimant went silent for ClaimTimeout. It returns how many releases it
// completed.
func (r *Releaser) Recover(ctx context.Context, takeOver bool) (int, error) {
	var errs []error
	n := 0
	r.mu.Lock()
	pending := make([]ConfirmRequest, 0, len(r.unconfirmed))
	for _, c := range r.unconfirmed {
		pending = append(pending, c)
	}
	r.mu.Unlock()
	for _, c := range pending {
		_, err := r.Store.Confirm(ctx, c)
		if err != nil && !IsRefusal(err) {
			errs = append(errs, err)
			continue
		}
		r.mu.Lock()
		delete(r.unconfirmed, c.ID)
		r.mu.Unlock()
		if err == nil {
			n++
		}
	}
	if !takeOver {
		return n, errors.Join(errs...)
	}
	now := r.now()
	f := Filter{State: StateClaimed, Limit: MaxLimit}
	for {
		page, err := r.Store.List(ctx, f)
		if err != nil {
			return n, errors.Join(append(errs, err)...)
		}
		for _, e := range page.Entries {
			if !e.StaleClaim(now) || r.isUnconfirmed(e.ID) {
				continue
			}
			c, err := r.Store.Claim(ctx, ClaimRequest{ID: e.ID, Node: r.Node, At: now, Token: newToken()})
			if err != nil {
				if !IsRefusal(err) {
					errs = append(errs, err)
				}
				continue
			}
			r.log().Warn("taking over a quarantine release whose node went silent", "event", "quarantine_release",
				"quarantine_id", e.ID, "claimant", e.Claimant, "claimed_at", e.ClaimedAt)
			if _, err := r.complete(ctx, c); err != nil {
				errs = append(errs, err)
				continue
			}
			n++
		}
		if page.Next == "" {
			return n, errors.Join(errs...)
		}
		f.Before = page.Next
	}
}

func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

func (r *Releaser) isUnconfirmed(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.unconfirmed[id]
	return ok
}
