package cluster

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/mxgate/mxgate/greylist"
)

// goldenSnapshot is a snapshot written by the FSM as it was before the
// state was split into registered domains (commit ea3705d): the bbolt file
// Persist streamed after goldenCommands were applied to an empty FSM. It
// must keep restoring: a node upgraded in place restores its last snapshot,
// and a leader of the older version sends its snapshots to upgraded
// followers. Never regenerate it with newer code.
const goldenSnapshot = "testdata/fsm-snapshot-ea3705d.db"

var (
	goldenChunkDone    = ChunkID{0xd0}
	goldenChunkPartial = ChunkID{0xa1}
)

// goldenChunkedTriplet is the put-triplet command of the partial chunked
// set, cut in two small parts (a chunk of any size is valid).
func goldenChunkedTriplet(key string) (first, second []byte) {
	inner := EncodePutTriplet(key, greylist.Triplet{FirstSeen: t0, LastSeen: t0, ExpiresAt: t0.Add(50 * time.Hour)})
	half := len(inner) / 2
	return inner[:half], inner[half:]
}

// goldenCommands built the golden snapshot's state: triplets pending,
// passed and already past their expiry, networks counting and
// auto-allowed, a chunked command applied in full (its id remembered in
// chunk_done) and one with a part still missing (in chunk_parts and
// chunk_sets).
func goldenCommands() [][]byte {
	exp := t0.Add(time.Hour)
	cmds := [][]byte{
		EncodePutTriplet("192.0.2.0/24|5:a@b.c|d@e.f", greylist.Triplet{FirstSeen: t0, LastSeen: t0, ExpiresAt: t0.Add(48*time.Hour + 3*time.Minute)}),
		EncodePutTriplet("198.51.100.0/24|0:|postmaster@e.f", greylist.Triplet{FirstSeen: t0, LastSeen: t0.Add(10 * time.Minute), PassedAt: t0.Add(10 * time.Minute), ExpiresAt: t0.Add(36 * 24 * time.Hour)}),
		EncodePutTriplet("2001:db8::/64|3:x@y|z@e.f", greylist.Triplet{FirstSeen: t0.Add(-72 * time.Hour), LastSeen: t0.Add(-72 * time.Hour), ExpiresAt: t0.Add(-time.Hour)}),
		EncodePutNetwork("198.51.100.0/24", greylist.Network{Passes: 2, ExpiresAt: t0.Add(36 * 24 * time.Hour)}),
		EncodePutNetwork("203.0.113.0/24", greylist.Network{Passes: 5, AllowedUntil: t0.Add(36 * 24 * time.Hour), ExpiresAt: t0.Add(36 * 24 * time.Hour)}),
	}
	a, b := goldenChunkedTriplet("chunked-done")
	cmds = append(cmds,
		EncodeChunk(goldenChunkDone, 0, 2, exp, a),
		EncodeChunk(goldenChunkDone, 1, 2, exp, b))
	a, _ = goldenChunkedTriplet("chunked-partial")
	return append(cmds, EncodeChunk(goldenChunkPartial, 0, 2, exp, a))
}

func TestGoldenSnapshotRestores(t *testing.T) {
	data, err := os.ReadFile(goldenSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	f := newTestFSM(t)
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("restoring the snapshot of the earlier version: %v", err)
	}

	// The same commands applied by this version give the same state.
	want := newTestFSM(t)
	for _, c := range goldenCommands() {
		mustApply(t, want, c)
	}
	if got, want := dump(t, f), dump(t, want); !reflect.DeepEqual(got, want) {
		t.Errorf("restored state:\n%v\nwant (the golden commands applied now):\n%v", got, want)
	}
	for _, name := range []string{"greylist_triplets", "greylist_networks", "chunk_parts", "chunk_sets", "chunk_done"} {
		if len(dump(t, f)[name]) == 0 {
			t.Errorf("bucket %s empty after restore: the golden file does not exercise it", name)
		}
	}

	// Reads decode the old values.
	tr, ok, err := f.GetTriplet("198.51.100.0/24|0:|postmaster@e.f")
	if err != nil || !ok || !tr.PassedAt.Equal(t0.Add(10*time.Minute)) || !tr.ExpiresAt.Equal(t0.Add(36*24*time.Hour)) {
		t.Errorf("passed triplet = %+v, %v, %v", tr, ok, err)
	}
	n, ok, err := f.GetNetwork("203.0.113.0/24")
	if err != nil || !ok || n.Passes != 5 || !n.AllowedUntil.Equal(t0.Add(36*24*time.Hour)) {
		t.Errorf("auto-allowed network = %+v, %v, %v", n, ok, err)
	}
	if _, ok, _ := f.GetTriplet("chunked-done"); !ok {
		t.Error("the completed chunked command's triplet is missing")
	}

	// The partial chunked command completes with its second part; a part of
	// the completed one is recognised as a duplicate.
	_, second := goldenChunkedTriplet("chunked-partial")
	mustApply(t, f, EncodeChunk(goldenChunkPartial, 1, 2, t0.Add(time.Hour), second))
	if _, ok, _ := f.GetTriplet("chunked-partial"); !ok {
		t.Error("the chunked command begun before the snapshot did not complete")
	}
	_, second = goldenChunkedTriplet("chunked-done")
	mustApply(t, f, EncodePutTriplet("chunked-done", triplet(t0)))
	mustApply(t, f, EncodeChunk(goldenChunkDone, 1, 2, t0.Add(time.Hour), second))
	if tr, _, _ := f.GetTriplet("chunked-done"); !tr.ExpiresAt.Equal(t0) {
		t.Error("a late duplicate part of a completed chunked command was applied again")
	}

	// Expiry applies to the restored state.
	if _, ok, _ := f.GetTriplet("2001:db8::/64|3:x@y|z@e.f"); !ok {
		t.Fatal("expired triplet missing before CmdExpire")
	}
	mustApply(t, f, EncodeExpire(t0))
	if _, ok, _ := f.GetTriplet("2001:db8::/64|3:x@y|z@e.f"); ok {
		t.Error("CmdExpire kept a restored triplet past its expiry")
	}
	if entries, _ := os.ReadDir(filepath.Dir(filepath.Join(f.dir, fsmFile))); len(entries) != 1 {
		t.Errorf("restore left files: %v", entries)
	}
}
