package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/mxgate/mxgate/greylist"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func newTestFSM(t *testing.T) *FSM {
	t.Helper()
	return newTestFSMWith(t, defaultRegistry)
}

// newTestFSMWith returns an FSM with the domains of reg.
func newTestFSMWith(t *testing.T, reg *registry) *FSM {
	t.Helper()
	f, err := newFSM(t.TempDir(), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// apply hands data to the FSM as Raft would.
func apply(f *FSM, data []byte) any {
	return f.Apply(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: data})
}

func mustApply(t *testing.T, f *FSM, data []byte) any {
	t.Helper()
	resp := apply(f, data)
	if err, ok := resp.(error); ok {
		t.Fatalf("apply %v: %v", CommandType(data[0]), err)
	}
	return resp
}

func mustPanic(t *testing.T, what string, fn func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", what)
		}
	}()
	fn()
}

// dump returns every key and value of every bucket.
func dump(t *testing.T, f *FSM) map[string]map[string]string {
	t.Helper()
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := map[string]map[string]string{}
	err := f.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			m := map[string]string{}
			out[string(name)] = m
			return b.ForEach(func(k, v []byte) error { m[string(k)] = string(v); return nil })
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func triplet(exp time.Time) greylist.Triplet {
	return greylist.Triplet{FirstSeen: t0, LastSeen: t0.Add(time.Minute), ExpiresAt: exp}
}

func TestPutAndGet(t *testing.T) {
	f := newTestFSM(t)
	tr := greylist.Triplet{FirstSeen: t0, LastSeen: t0.Add(time.Minute), PassedAt: t0.Add(5 * time.Minute), ExpiresAt: t0.Add(36 * 24 * time.Hour)}
	nw := greylist.Network{Passes: 3, AllowedUntil: t0.Add(time.Hour), ExpiresAt: t0.Add(2 * time.Hour)}
	if r := mustApply(t, f, EncodePutTriplet("192.0.2.0/24|3:a@b|c@d", tr)); r != nil {
		t.Errorf("put triplet response %v", r)
	}
	if r := mustApply(t, f, EncodePutNetwork("192.0.2.0/24", nw)); r != nil {
		t.Errorf("put network response %v", r)
	}

	got, ok, err := f.GetTriplet("192.0.2.0/24|3:a@b|c@d")
	if err != nil || !ok || !got.FirstSeen.Equal(tr.FirstSeen) || !got.LastSeen.Equal(tr.LastSeen) || !got.PassedAt.Equal(tr.PassedAt) || !got.ExpiresAt.Equal(tr.ExpiresAt) {
		t.Errorf("GetTriplet = %+v, %v, %v; want %+v", got, ok, err, tr)
	}
	gotN, ok, err := f.GetNetwork("192.0.2.0/24")
	if err != nil || !ok || gotN.Passes != 3 || !gotN.AllowedUntil.Equal(nw.AllowedUntil) || !gotN.ExpiresAt.Equal(nw.ExpiresAt) {
		t.Errorf("GetNetwork = %+v, %v, %v; want %+v", gotN, ok, err, nw)
	}

	// Overwrite.
	nw.Passes = 4
	mustApply(t, f, EncodePutNetwork("192.0.2.0/24", nw))
	if gotN, _, _ := f.GetNetwork("192.0.2.0/24"); gotN.Passes != 4 {
		t.Errorf("after overwrite Passes = %d", gotN.Passes)
	}

	// Missing keys.
	if _, ok, err := f.GetTriplet("nope"); ok || err != nil {
		t.Errorf("GetTriplet(missing) = %v, %v", ok, err)
	}
	if _, ok, err := f.GetNetwork("nope"); ok || err != nil {
		t.Errorf("GetNetwork(missing) = %v, %v", ok, err)
	}
}

func TestSemanticErrorsAreResponses(t *testing.T) {
	f := newTestFSM(t)
	before := dump(t, f)
	for name, cmd := range map[string][]byte{
		"empty triplet key": EncodePutTriplet("", triplet(t0)),
		"empty network":     EncodePutNetwork("", greylist.Network{}),
		"huge key":          EncodePutTriplet(strings.Repeat("k", bolt.MaxKeySize+1), triplet(t0)),
		"expire zero time":  EncodeExpire(time.Time{}),
		"chunk total 0":     EncodeChunk(ChunkID{1}, 0, 0, t0, []byte("x")),
		"chunk index>=tot":  EncodeChunk(ChunkID{1}, 2, 2, t0, []byte("x")),
		"chunk too many":    EncodeChunk(ChunkID{1}, 0, MaxChunks+1, t0, []byte("x")),
		"chunk no expiry":   EncodeChunk(ChunkID{1}, 0, 2, time.Unix(0, 0), []byte("x")),
	} {
		resp := apply(f, cmd)
		if err, ok := resp.(error); !ok || !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("%s: response %v, want ErrInvalidCommand", name, resp)
		}
	}
	if after := dump(t, f); !reflect.DeepEqual(before, after) {
		t.Errorf("rejected commands changed the state: %v", after)
	}
}

func TestExpire(t *testing.T) {
	f := newTestFSM(t)
	now := t0.Add(10 * time.Hour)
	triplets := map[string]time.Time{
		"past":   now.Add(-time.Second),
		"equal":  now, // not before its expiry: dead, as in greylist.Check
		"future": now.Add(time.Nanosecond),
		"zero":   {},
		"later":  now.Add(48 * time.Hour),
	}
	for k, exp := range triplets {
		mustApply(t, f, EncodePutTriplet(k, triplet(exp)))
	}
	networks := map[string]greylist.Network{
		"both-past":       {Passes: 1, ExpiresAt: now.Add(-time.Hour), AllowedUntil: now.Add(-time.Minute)},
		"allowed-later":   {Passes: 5, ExpiresAt: now.Add(-time.Hour), AllowedUntil: now.Add(time.Hour)},
		"expires-later":   {Passes: 2, ExpiresAt: now.Add(time.Hour)},
		"never-allowed":   {Passes: 1, ExpiresAt: now.Add(-time.Nanosecond)},
		"allowed-at-edge": {Passes: 5, ExpiresAt: now.Add(-time.Hour), AllowedUntil: now},
	}
	for k, n := range networks {
		mustApply(t, f, EncodePutNetwork(k, n))
	}

	resp := mustApply(t, f, EncodeExpire(now))
	want := ExpireResult{"triplets": 3, "networks": 3, "chunks": 0, "quarantine": 0}
	if !reflect.DeepEqual(resp, want) {
		t.Errorf("expire response %+v, want %+v", resp, want)
	}
	for k := range triplets {
		_, ok, _ := f.GetTriplet(k)
		if wantOK := k == "future" || k == "later"; ok != wantOK {
			t.Errorf("triplet %q present=%v, want %v", k, ok, wantOK)
		}
	}
	for k := range networks {
		_, ok, _ := f.GetNetwork(k)
		if wantOK := k == "allowed-later" || k == "expires-later"; ok != wantOK {
			t.Errorf("network %q present=%v, want %v", k, ok, wantOK)
		}
	}

	// Applying the same expire again removes nothing more: replay is safe.
	if resp := mustApply(t, f, EncodeExpire(now)); resp.(ExpireResult).Total() != 0 {
		t.Errorf("second expire %+v", resp)
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "test" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { s.closed = true; return nil }

func snapshot(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

func populate(t *testing.T, f *FSM, n int) {
	t.Helper()
	for i := range n {
		mustApply(t, f, EncodePutTriplet(fmt.Sprintf("net%d|1:s|r%d", i%7, i), triplet(t0.Add(time.Duration(i)*time.Minute))))
		if i%3 == 0 {
			mustApply(t, f, EncodePutNetwork(fmt.Sprintf("net%d", i), greylist.Network{Passes: i, ExpiresAt: t0.Add(time.Duration(i) * time.Hour)}))
		}
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	src := newTestFSM(t)
	populate(t, src, 500)
	// A chunked command half applied must travel with the snapshot.
	big := padTriplet("big", triplet(t0.Add(time.Hour)), 2*MaxEntrySize)
	parts, err := SplitCommand(big, ChunkID{9}, t0.Add(time.Hour))
	if err != nil || len(parts) < 3 {
		t.Fatalf("SplitCommand: %d parts, %v", len(parts), err)
	}
	mustApply(t, src, parts[0])

	want := dump(t, src)
	data := snapshot(t, src)

	dst := newTestFSM(t)
	mustApply(t, dst, EncodePutTriplet("only-in-dst", triplet(t0)))
	if err := dst.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, dst); !reflect.DeepEqual(got, want) {
		t.Errorf("restored state differs: %d buckets vs %d", len(got), len(want))
		for b := range want {
			if !reflect.DeepEqual(got[b], want[b]) {
				t.Errorf("bucket %s: %d entries, want %d", b, len(got[b]), len(want[b]))
			}
		}
	}
	if _, ok, _ := dst.GetTriplet("only-in-dst"); ok {
		t.Error("restore kept state that was not in the snapshot")
	}
	// The rest of the chunked command completes on the restored node.
	for _, p := range parts[1:] {
		mustApply(t, dst, p)
	}
	if _, ok, _ := dst.GetTriplet("big"); !ok {
		t.Error("chunked command begun before the snapshot did not complete after restore")
	}
	// Only the live file is left in the directory.
	entries, _ := os.ReadDir(dst.dir)
	if len(entries) != 1 || entries[0].Name() != fsmFile {
		t.Errorf("dir holds %v, want only %s", entries, fsmFile)
	}
}

func TestSnapshotIsPointInTime(t *testing.T) {
	f := newTestFSM(t)
	populate(t, f, 50)
	want := dump(t, f)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()

	// Apply goes on while Persist streams, as Raft does.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			apply(f, EncodePutTriplet(fmt.Sprintf("after%d", i), triplet(t0)))
		}
	}()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	<-done

	g := newTestFSM(t)
	if err := g.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, g); !reflect.DeepEqual(got, want) {
		t.Error("snapshot is not the state at Snapshot()")
	}
	if _, ok, _ := f.GetTriplet("after199"); !ok {
		t.Error("applies during Persist were lost")
	}
}

func TestRestoreBadSnapshotKeepsState(t *testing.T) {
	f := newTestFSM(t)
	populate(t, f, 20)
	want := dump(t, f)
	if err := f.Restore(io.NopCloser(strings.NewReader("not a bolt file at all"))); err == nil {
		t.Fatal("restore of garbage succeeded")
	}
	if got := dump(t, f); !reflect.DeepEqual(got, want) {
		t.Error("failed restore changed the state")
	}
	entries, _ := os.ReadDir(f.dir)
	if len(entries) != 1 {
		t.Errorf("temporary file left: %v", entries)
	}
	mustApply(t, f, EncodePutTriplet("still-works", triplet(t0)))
}

func TestNewFSMStartsEmpty(t *testing.T) {
	dir := t.TempDir()
	f, err := NewFSM(dir)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, f, EncodePutTriplet("k", triplet(t0)))
	f.Close()
	if err := os.WriteFile(filepath.Join(dir, "fsm-restore-123.db"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := NewFSM(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, ok, _ := g.GetTriplet("k"); ok {
		t.Error("NewFSM kept state from a previous run; Raft would apply the log twice")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("stale restore file kept: %v", entries)
	}
}

func TestUnknownCommands(t *testing.T) {
	f := newTestFSM(t)
	mustPanic(t, "unknown type", func() { apply(f, []byte{0x7f, '{', '}'}) })
	mustPanic(t, "empty entry", func() { apply(f, nil) })

	before := dump(t, f)
	if resp := apply(f, []byte{0xff, 1, 2, 3}); resp != nil {
		t.Errorf("ignorable unknown: response %v", resp)
	}
	if resp := apply(f, []byte{byte(IgnorableFlag | 0x40)}); resp != nil {
		t.Errorf("ignorable unknown, empty payload: response %v", resp)
	}
	if n := f.IgnoredCommands(); n != 2 {
		t.Errorf("IgnoredCommands = %d", n)
	}
	if !reflect.DeepEqual(before, dump(t, f)) {
		t.Error("ignored command changed the state")
	}

	// A known command sent with the flag is applied, not ignored.
	cmd := EncodePutTriplet("flagged", triplet(t0))
	cmd[0] |= byte(IgnorableFlag)
	mustApply(t, f, cmd)
	if _, ok, _ := f.GetTriplet("flagged"); !ok {
		t.Error("known command with IgnorableFlag not applied")
	}
}

func TestUndecodableKnownCommandPanics(t *testing.T) {
	f := newTestFSM(t)
	for name, data := range map[string][]byte{
		"triplet bad json":    append([]byte{byte(CmdGreylistPutTriplet)}, `{"k":`...),
		"triplet wrong type":  append([]byte{byte(CmdGreylistPutTriplet)}, `{"k":1}`...),
		"triplet empty":       {byte(CmdGreylistPutTriplet)},
		"network bad json":    append([]byte{byte(CmdGreylistPutNetwork)}, `[]`...),
		"expire bad time":     append([]byte{byte(CmdExpire)}, `{"now":"yesterday"}`...),
		"chunk short header":  append([]byte{byte(CmdChunk)}, make([]byte, chunkHeaderSize-1)...),
		"ignorable known bad": append([]byte{byte(CmdExpire | IgnorableFlag)}, `x`...),
	} {
		mustPanic(t, name, func() { apply(f, data) })
	}
	// A panicking apply rolled back: the FSM is still usable (Raft would
	// have stopped; this shows no half-written transaction is left).
	mustApply(t, f, EncodePutTriplet("k", triplet(t0)))
}

// padTriplet returns a valid put-triplet command of at least size bytes
// (JSON allows trailing white space).
func padTriplet(key string, tr greylist.Triplet, size int) []byte {
	cmd := EncodePutTriplet(key, tr)
	return append(cmd, bytes.Repeat([]byte{' '}, size-len(cmd))...)
}

// testCmd is a command type registered only in tests, standing in for a
// large command such as a quarantined message.
const testCmd CommandType = 0x7e

type recorder struct{ calls [][]byte }

// recorderFSM returns an FSM with the default domains and one more whose
// command testCmd records its payloads.
func recorderFSM(t *testing.T) (*FSM, *recorder) {
	t.Helper()
	r := &recorder{}
	reg := defaultRegistry.clone()
	err := reg.register(domain{name: "recorder", commands: []command{{testCmd, "test", func(_ *FSM, _ *bolt.Tx, payload []byte) any {
		r.calls = append(r.calls, bytes.Clone(payload))
		return "applied"
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	return newTestFSMWith(t, reg), r
}

func bigPayload(n int) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func chunkState(t *testing.T, f *FSM) (parts, sets, done int) {
	d := dump(t, f)
	return len(d[string(bucketChunks)]), len(d[string(bucketChunkSets)]), len(d[string(bucketChunkDone)])
}

func TestChunkedCommand(t *testing.T) {
	f, rec := recorderFSM(t)
	payload := bigPayload(2 << 20)
	cmd := append([]byte{byte(testCmd)}, payload...)
	exp := t0.Add(time.Hour)
	entries, err := SplitCommand(cmd, NewChunkID(), exp)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 5 {
		t.Errorf("%d entries for 2 MiB", len(entries))
	}
	for i, e := range entries {
		if len(e) > MaxEntrySize {
			t.Errorf("entry %d is %d bytes", i, len(e))
		}
	}

	for i, e := range entries[:len(entries)-1] {
		if resp := mustApply(t, f, e); resp != nil {
			t.Errorf("part %d: response %v", i, resp)
		}
		// Other commands interleave with the parts.
		mustApply(t, f, EncodePutTriplet(fmt.Sprintf("between%d", i), triplet(exp)))
		// A duplicated part counts once.
		mustApply(t, f, e)
	}
	if len(rec.calls) != 0 {
		t.Fatal("applied before the last part")
	}
	if resp := mustApply(t, f, entries[len(entries)-1]); resp != "applied" {
		t.Errorf("last part: response %v, want the inner command's", resp)
	}
	if len(rec.calls) != 1 || !bytes.Equal(rec.calls[0], payload) {
		t.Fatalf("inner applied %d times, payload intact=%v", len(rec.calls), len(rec.calls) == 1 && bytes.Equal(rec.calls[0], payload))
	}
	if p, s, d := chunkState(t, f); p != 0 || s != 0 || d != 1 {
		t.Errorf("after completion: %d parts, %d sets, %d done markers", p, s, d)
	}

	// A late duplicate of any part does not apply the command again.
	for _, e := range entries {
		mustApply(t, f, e)
	}
	if len(rec.calls) != 1 {
		t.Errorf("duplicate parts re-applied the command: %d calls", len(rec.calls))
	}
	// Expire forgets the completed id once its expiry passed.
	if resp := mustApply(t, f, EncodeExpire(exp)); resp.(ExpireResult)["chunks"] != 1 {
		t.Errorf("expire: %+v", resp)
	}
	if p, s, d := chunkState(t, f); p != 0 || s != 0 || d != 0 {
		t.Errorf("after expire: %d parts, %d sets, %d done markers", p, s, d)
	}
}

func TestChunkedOutOfOrderAndRealCommand(t *testing.T) {
	f := newTestFSM(t)
	cmd := padTriplet("padded", triplet(t0.Add(time.Hour)), 2<<20)
	entries, err := SplitCommand(cmd, NewChunkID(), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// Raft applies in log order, but the order parts were proposed in is
	// not something the FSM relies on.
	order := []int{3, 0, 4, 2, 1}
	for i, j := range order {
		resp := mustApply(t, f, entries[j])
		if i < len(order)-1 && resp != nil {
			t.Errorf("part %d answered %v", j, resp)
		}
	}
	if _, ok, _ := f.GetTriplet("padded"); !ok {
		t.Error("chunked put-triplet not applied")
	}
}

func TestChunkedMissingPart(t *testing.T) {
	f, rec := recorderFSM(t)
	cmd := append([]byte{byte(testCmd)}, bigPayload(2<<20)...)
	exp := t0.Add(time.Hour)
	entries, err := SplitCommand(cmd, NewChunkID(), exp)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		if i == 2 {
			continue // the proposer died, or this part never made it
		}
		mustApply(t, f, e)
	}
	if len(rec.calls) != 0 {
		t.Fatal("applied with a part missing")
	}
	if p, s, _ := chunkState(t, f); p != len(entries)-1 || s != 1 {
		t.Errorf("pending: %d parts, %d sets", p, s)
	}

	// A part that disagrees on the total is rejected and changes nothing.
	before := dump(t, f)
	id := ChunkID(entries[0][1:17])
	if resp := apply(f, EncodeChunk(id, 2, 9, exp, []byte("x"))); !errors.Is(resp.(error), ErrInvalidCommand) {
		t.Errorf("total mismatch: %v", resp)
	}
	if !reflect.DeepEqual(before, dump(t, f)) {
		t.Error("rejected part changed the state")
	}

	// Not yet expired: kept. Expired: the partial set goes.
	if resp := mustApply(t, f, EncodeExpire(exp.Add(-time.Nanosecond))); resp.(ExpireResult)["chunks"] != 0 {
		t.Errorf("early expire removed %+v", resp)
	}
	if resp := mustApply(t, f, EncodeExpire(exp)); resp.(ExpireResult)["chunks"] != 1 {
		t.Errorf("expire removed %+v", resp)
	}
	if p, s, d := chunkState(t, f); p != 0 || s != 0 || d != 0 {
		t.Errorf("after expire: %d parts, %d sets, %d done", p, s, d)
	}
	if len(rec.calls) != 0 {
		t.Error("expired set was applied")
	}
}

func TestChunkCannotNest(t *testing.T) {
	f := newTestFSM(t)
	inner := EncodeChunk(ChunkID{1}, 0, 1, t0, []byte("x"))
	outer := EncodeChunk(ChunkID{2}, 0, 1, t0, inner)
	if resp := apply(f, outer); !errors.Is(resp.(error), ErrInvalidCommand) {
		t.Errorf("nested chunk: %v", resp)
	}
	if p, s, d := chunkState(t, f); p+s+d != 0 {
		t.Error("rejected nested chunk left state")
	}
}

func TestSplitSmallCommand(t *testing.T) {
	cmd := EncodeExpire(t0)
	entries, err := SplitCommand(cmd, NewChunkID(), time.Time{})
	if err != nil || len(entries) != 1 || !bytes.Equal(entries[0], cmd) {
		t.Errorf("SplitCommand(small) = %d entries, %v", len(entries), err)
	}
	if _, err := SplitCommand(make([]byte, MaxEntrySize+1), NewChunkID(), time.Time{}); err == nil {
		t.Error("chunked command without expiry accepted")
	}
}

// Reads from other goroutines while Raft applies and restores: run with
// -race.
func TestConcurrentReadsDuringRestore(t *testing.T) {
	f := newTestFSM(t)
	populate(t, f, 100)
	data := snapshot(t, f)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := f.GetTriplet(fmt.Sprintf("net%d|1:s|r%d", g, i%100)); err != nil {
					t.Error(err)
					return
				}
				f.Size()
			}
		}()
	}
	for i := range 10 {
		mustApply(t, f, EncodePutNetwork(fmt.Sprintf("n%d", i), greylist.Network{Passes: i}))
		if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if _, ok, _ := f.GetNetwork("n9"); ok {
		t.Error("state applied before the last restore survived it")
	}
}

func TestApplyBatchMatchesOneByOne(t *testing.T) {
	big := padTriplet("big", triplet(t0.Add(time.Hour)), 3*MaxEntrySize/2)
	parts, err := SplitCommand(big, ChunkID{9}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	valid := [][]byte{
		EncodePutTriplet("a", triplet(t0.Add(time.Hour))),
		EncodePutNetwork("192.0.2.0/24", greylist.Network{Passes: 2, ExpiresAt: t0.Add(time.Hour)}),
		EncodePutTriplet("old", triplet(t0.Add(-time.Hour))),
		EncodeExpire(t0),
	}
	valid = append(valid, parts...)
	withRejected := append(append(append([][]byte{}, valid[:2]...), EncodePutTriplet("", triplet(t0))), valid[2:]...)

	for name, cmds := range map[string][][]byte{"all valid": valid, "one rejected": withRejected} {
		t.Run(name, func(t *testing.T) {
			var logs []*raft.Log
			for i, c := range cmds {
				logs = append(logs, &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: c})
			}
			// A configuration entry in the batch gets a nil response.
			logs = append(logs, &raft.Log{Index: uint64(len(cmds) + 1), Term: 1, Type: raft.LogConfiguration})

			one, batch := newTestFSM(t), newTestFSM(t)
			var want []any
			for _, l := range logs {
				want = append(want, one.Apply(l))
			}
			got := batch.ApplyBatch(logs)
			if len(got) != len(logs) {
				t.Fatalf("%d responses for %d entries", len(got), len(logs))
			}
			for i := range want {
				we, wIsErr := want[i].(error)
				ge, gIsErr := got[i].(error)
				if wIsErr != gIsErr || (wIsErr && we.Error() != ge.Error()) || (!wIsErr && !reflect.DeepEqual(want[i], got[i])) {
					t.Errorf("entry %d: batch response %#v, one by one %#v", i, got[i], want[i])
				}
			}
			if a, b := dump(t, one), dump(t, batch); !reflect.DeepEqual(a, b) {
				t.Errorf("state differs:\nbatch %v\none by one %v", b, a)
			}
			if _, ok, _ := batch.GetTriplet("big"); !ok {
				t.Error("the chunked command was not applied in the batch")
			}
			if _, ok, _ := batch.GetTriplet("old"); ok {
				t.Error("the expire in the batch did not remove the expired triplet")
			}
		})
	}
}
