package quarantine

import (
	"context"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Store keeps the quarantine. Every write is all or nothing and returns
// one of the package's errors (ErrNotFound, ErrFull, ErrClaimed...) for a
// refused request; any other error is a failure of the store itself
// (no quorum, a disk error), after which the write may or may not have
// happened (a cluster write whose answer was lost).
type Store interface {
	// Put stores a new held entry and the message read from body
	// (compressed here), and returns the entry as stored. ErrFull: the
	// store's cap would be passed.
	Put(ctx context.Context, e Entry, body io.Reader) (Entry, error)
	Get(ctx context.Context, id string) (Entry, error)
	List(ctx context.Context, f Filter) (Page, error)
	// Body opens the message of a held or claimed entry.
	Body(ctx context.Context, id string) (io.ReadCloser, error)
	// Delete drops a held entry's message and marks it deleted.
	Delete(ctx context.Context, id, by string, at time.Time) (Entry, error)
	// Claim, Confirm and Unclaim are the steps of a release (Releaser
	// drives them): Claim is won by one node; that node spools the
	// message and confirms, or gives the claim up with Unclaim.
	Claim(ctx context.Context, req ClaimRequest) (Entry, error)
	Confirm(ctx context.Context, req ConfirmRequest) (Entry, error)
	Unclaim(ctx context.Context, req UnclaimRequest) error
	// Expire removes the entries expired at now and returns how many. In
	// a cluster the leader's expiry command does it, and Expire does
	// nothing.
	Expire(ctx context.Context, now time.Time) (int, error)
	Stats(ctx context.Context) (Stats, error)
	// ReportSent records that the daily report covered up to at (the
	// record never moves back); LastReport reads it (zero: never). In a
	// cluster it is replicated, so a new leader reports from where the
	// old one stopped.
	ReportSent(ctx context.Context, at time.Time) error
	LastReport(ctx context.Context) (time.Time, error)
}

// LocalStore is the quarantine of a standalone node: a bbolt file in the
// data dir, fsynced at every write (it is the only copy).
type LocalStore struct {
	db       *bolt.DB
	maxBytes int64
}

var _ Store = (*LocalStore)(nil)

// OpenLocal opens or creates the store at path; maxBytes caps the
// compressed bodies it holds (0: no cap).
func OpenLocal(path string, maxBytes int64) (*LocalStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("quarantine: opening %s: %w", path, err)
	}
	if err := db.Update(CreateBuckets); err != nil {
		db.Close()
		return nil, fmt.Errorf("quarantine: preparing %s: %w", path, err)
	}
	return &LocalStore{db: db, maxBytes: maxBytes}, nil
}

// Close closes the file.
func (s *LocalStore) Close() error { return s.db.Close() }

// update runs fn in a write transaction; a store error rolls it back and
// is returned as it is.
func (s *LocalStore) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var refused error
	err := s.db.Update(func(tx *bolt.Tx) error {
		err := fn(tx)
		if Code(err) != "" {
			refused = err
		}
		return err
	})
	if refused != nil {
		return refused
	}
	if err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	return nil
}

func (s *LocalStore) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

// Put implements Store.
func (s *LocalStore) Put(ctx context.Context, e Entry, body io.Reader) (Entry, error) {
	z, size, err := Compress(body)
	if err != nil {
		return Entry{}, err
	}
	e.Size = size
	var out Entry
	err = s.update(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = PutTx(tx, PutRequest{Entry: e, MaxBytes: s.maxBytes}, z)
		return err
	})
	return out, err
}

// Get implements Store.
func (s *LocalStore) Get(ctx context.Context, id string) (Entry, error) {
	var e Entry
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		e, err = GetTx(tx, id)
		return err
	})
	return e, err
}

// List implements Store.
func (s *LocalStore) List(ctx context.Context, f Filter) (Page, error) {
	var p Page
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		p, err = ListTx(tx, f)
		return err
	})
	return p, err
}

// Body implements Store.
func (s *LocalStore) Body(ctx context.Context, id string) (io.ReadCloser, error) {
	var z []byte
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		z, err = BodyTx(tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return Decompress(z)
}

// Delete implements Store.
func (s *LocalStore) Delete(ctx context.Context, id, by string, at time.Time) (Entry, error) {
	var e Entry
	err := s.update(ctx, func(tx *bolt.Tx) error {
		var err error
		e, err = DeleteTx(tx, DeleteRequest{ID: id, By: by, At: at})
		return err
	})
	return e, err
}

// Claim implements Store.
func (s *LocalStore) Claim(ctx context.Context, req ClaimRequest) (Entry, error) {
	var e Entry
	err := s.update(ctx, func(tx *bolt.Tx) error {
		var err error
		e, err = ClaimTx(tx, req)
		return err
	})
	return e, err
}

// Confirm implements Store.
func (s *LocalStore) Confirm(ctx context.Context, req ConfirmRequest) (Entry, error) {
	var e Entry
	err := s.update(ctx, func(tx *bolt.Tx) error {
		var err error
		e, err = ConfirmTx(tx, req)
		return err
	})
	return e, err
}

// Unclaim implements Store.
func (s *LocalStore) Unclaim(ctx context.Context, req UnclaimRequest) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		_, err := UnclaimTx(tx, req)
		return err
	})
}

// Expire implements Store.
func (s *LocalStore) Expire(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := s.update(ctx, func(tx *bolt.Tx) error {
		var err error
		n, err = ExpireTx(tx, now)
		return err
	})
	return n, err
}

// Stats implements Store.
func (s *LocalStore) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := s.view(ctx, func(tx *bolt.Tx) error {
		st = StatsTx(tx)
		return nil
	})
	return st, err
}

// ReportSent implements Store.
func (s *LocalStore) ReportSent(ctx context.Context, at time.Time) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		_, err := ReportSentTx(tx, ReportSentRequest{At: at})
		return err
	})
}

// LastReport implements Store.
func (s *LocalStore) LastReport(ctx context.Context) (time.Time, error) {
	var t time.Time
	err := s.view(ctx, func(tx *bolt.Tx) error {
		t = LastReportTx(tx)
		return nil
	})
	return t, err
}

// IsRefusal reports whether err is a store's refusal of a request (one
// of the package's errors) rather than a failure of the store.
func IsRefusal(err error) bool { return Code(err) != "" }
