package bayes

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mxgate/mxgate/filter/bayes/redistest"
)

// storeSuite is the round trip every Store must pass.
func storeSuite(t *testing.T, s Store) {
	ctx := context.Background()
	a, b, c := uint64(1), uint64(0xdeadbeefcafef00d), uint64(42)

	nham, nspam, err := s.Learned(ctx)
	if err != nil || nham != 0 || nspam != 0 {
		t.Fatalf("empty store: Learned = %d, %d, %v; want 0, 0, nil", nham, nspam, err)
	}
	if err := s.Learn(ctx, []uint64{a, b}, false, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Learn(ctx, []uint64{b, c}, true, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Learn(ctx, []uint64{c}, true, 1); err != nil {
		t.Fatal(err)
	}
	nham, nspam, counts, err := s.Lookup(ctx, []uint64{a, b, c, 7})
	if err != nil {
		t.Fatal(err)
	}
	want := []Counts{{Ham: 1}, {Ham: 1, Spam: 1}, {Spam: 2}, {}}
	if nham != 1 || nspam != 2 {
		t.Errorf("Lookup totals = %d ham, %d spam; want 1, 2", nham, nspam)
	}
	for i := range want {
		if counts[i] != want[i] {
			t.Errorf("feature %d: counts %+v, want %+v", i, counts[i], want[i])
		}
	}

	// Unlearn takes the spam message {b, c} back.
	if err := s.Learn(ctx, []uint64{b, c}, true, -1); err != nil {
		t.Fatal(err)
	}
	nham, nspam, counts, err = s.Lookup(ctx, []uint64{a, b, c})
	if err != nil {
		t.Fatal(err)
	}
	want = []Counts{{Ham: 1}, {Ham: 1}, {Spam: 1}}
	if nham != 1 || nspam != 1 {
		t.Errorf("after unlearn: totals %d ham, %d spam; want 1, 1", nham, nspam)
	}
	for i := range want {
		if counts[i] != want[i] {
			t.Errorf("after unlearn: feature %d: counts %+v, want %+v", i, counts[i], want[i])
		}
	}

	// Concurrent learns all count (run with -race).
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Learn(ctx, []uint64{a, 100}, false, 1); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	nham, _, counts, err = s.Lookup(ctx, []uint64{a, 100})
	if err != nil {
		t.Fatal(err)
	}
	if nham != 9 || counts[0].Ham != 9 || counts[1].Ham != 8 {
		t.Errorf("after 8 concurrent learns: nham %d, a %+v, 100 %+v; want 9, {9 1}, {8 0}", nham, counts[0], counts[1])
	}

	// A cancelled context is an error, not an empty answer.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, _, err := s.Lookup(cctx, []uint64{a}); err == nil {
		t.Error("Lookup with a cancelled context: no error")
	}
}

func TestMemStore(t *testing.T) { storeSuite(t, NewMemStore()) }

func TestBoltStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), BoltFile)
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	storeSuite(t, s)
	// A second opener waits for the lock and says why it failed.
	if _, err := OpenBolt(path); err == nil {
		t.Error("second OpenBolt of an open store: no error")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The counts survive a reopen.
	s, err = OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nham, nspam, err := s.Learned(context.Background())
	if err != nil || nham != 9 || nspam != 1 {
		t.Errorf("after reopen: Learned = %d, %d, %v; want 9, 1, nil", nham, nspam, err)
	}
}

func TestRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	s := OpenRedis(RedisOptions{Addr: srv.Addr})
	defer s.Close()
	storeSuite(t, s)
	// Another node (another client, same prefix) sees the same counts;
	// another prefix sees none.
	other := OpenRedis(RedisOptions{Addr: srv.Addr})
	defer other.Close()
	nham, nspam, err := other.Learned(context.Background())
	if err != nil || nham != 9 || nspam != 1 {
		t.Errorf("second client: Learned = %d, %d, %v; want 9, 1, nil", nham, nspam, err)
	}
	apart := OpenRedis(RedisOptions{Addr: srv.Addr, Prefix: "other:"})
	defer apart.Close()
	if nham, nspam, err := apart.Learned(context.Background()); err != nil || nham != 0 || nspam != 0 {
		t.Errorf("other prefix: Learned = %d, %d, %v; want 0, 0, nil", nham, nspam, err)
	}
}
