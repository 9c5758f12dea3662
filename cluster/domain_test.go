package cluster

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"reflect"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mxgate/mxgate/greylist"
	"github.com/mxgate/mxgate/quarantine"
)

// listDomain is a domain registered only in tests, shaped like the sender
// and recipient lists to come: entries that expire.
type listDomain struct {
	name    string
	bucket  []byte
	put     CommandType // payload: expiry (Unix ns, 8 bytes BE) | key [| NUL | padding]
	expired []time.Time // the times its expiry rule was called with
}

func newListDomain(name string, put CommandType) *listDomain {
	return &listDomain{name: name, bucket: []byte(name + "_entries"), put: put}
}

func (l *listDomain) domain() domain {
	return domain{
		name:    l.name,
		buckets: [][]byte{l.bucket},
		commands: []command{{l.put, l.name + "_put", func(_ *FSM, tx *bolt.Tx, p []byte) any {
			if len(p) < 8 {
				panic("undecodable list command")
			}
			key := p[8:]
			if i := bytes.IndexByte(key, 0); i >= 0 {
				key = key[:i]
			}
			if len(key) == 0 {
				return invalid("empty list key")
			}
			mustPut(tx.Bucket(l.bucket), key, p[:8])
			return l.name + " stored"
		}}},
		expire: func(tx *bolt.Tx, now time.Time) map[string]int {
			l.expired = append(l.expired, now)
			return map[string]int{l.name: deleteWhere(tx.Bucket(l.bucket), func(v []byte) bool {
				return int64(binary.BigEndian.Uint64(v)) <= now.UnixNano()
			})}
		},
	}
}

func (l *listDomain) encodePut(key string, exp time.Time) []byte {
	b := binary.BigEndian.AppendUint64([]byte{byte(l.put)}, uint64(exp.UnixNano()))
	return append(b, key...)
}

// has reports whether f holds key in l's bucket.
func (l *listDomain) has(t *testing.T, f *FSM, key string) bool {
	t.Helper()
	_, ok := dump(t, f)[string(l.bucket)][key]
	return ok
}

// registryWith returns the default domains plus the given test ones.
func registryWith(t *testing.T, ls ...*listDomain) *registry {
	t.Helper()
	reg := defaultRegistry.clone()
	for _, l := range ls {
		if err := reg.register(l.domain()); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

func TestRegisteredDomainAppliesItsCommands(t *testing.T) {
	allow := newListDomain("allow", 0x70)
	reg := registryWith(t, allow)
	f := newTestFSMWith(t, reg)

	if b := dump(t, f)[string(allow.bucket)]; b == nil {
		t.Fatal("NewFSM did not create the registered domain's bucket")
	}
	if resp := mustApply(t, f, allow.encodePut("partner.example", t0)); resp != "allow stored" {
		t.Errorf("response %v, want the domain handler's", resp)
	}
	if !allow.has(t, f, "partner.example") {
		t.Error("the domain's command did not store its entry")
	}
	// Its semantic errors are responses and change nothing.
	before := dump(t, f)
	if resp := apply(f, allow.encodePut("", t0)); !errors.Is(resp.(error), ErrInvalidCommand) {
		t.Errorf("empty key: %v", resp)
	}
	if !reflect.DeepEqual(before, dump(t, f)) {
		t.Error("rejected command changed the state")
	}
	// Its undecodable payloads stop the node, as any known type's.
	mustPanic(t, "short payload", func() { apply(f, []byte{byte(allow.put), 1}) })
	// With IgnorableFlag it is still applied by a node that knows it.
	cmd := allow.encodePut("flagged.example", t0)
	cmd[0] |= byte(IgnorableFlag)
	mustApply(t, f, cmd)
	if !allow.has(t, f, "flagged.example") {
		t.Error("known command with IgnorableFlag not applied")
	}
	// The other domains are unaffected and still work.
	mustApply(t, f, EncodePutTriplet("k", triplet(t0)))
	if _, ok, _ := f.GetTriplet("k"); !ok {
		t.Error("greylist command not applied next to the new domain")
	}
	// Chunking is generic: a chunked command of the new domain is applied
	// by the domain's handler, once complete.
	parts, err := SplitCommand(padList(allow, "chunked.example"), NewChunkID(), t0.Add(time.Hour))
	if err != nil || len(parts) != 2 {
		t.Fatalf("SplitCommand: %d parts, %v", len(parts), err)
	}
	if resp := mustApply(t, f, parts[0]); resp != nil {
		t.Errorf("first part: response %v", resp)
	}
	if resp := mustApply(t, f, parts[1]); resp != "allow stored" {
		t.Errorf("last part: response %v, want the domain handler's", resp)
	}
	if !allow.has(t, f, "chunked.example") {
		t.Error("the chunked command of the domain was not applied")
	}
}

func TestRegistryRefusesConflicts(t *testing.T) {
	ok := func(*FSM, *bolt.Tx, []byte) any { return nil }
	for name, d := range map[string]domain{
		"no name":            {commands: []command{{0x70, "x", ok}}},
		"name taken":         {name: "greylist"},
		"greylist type":      {name: "d", commands: []command{{CmdGreylistPutTriplet, "x", ok}}},
		"expire type":        {name: "d", commands: []command{{CmdExpire, "x", ok}}},
		"chunk type":         {name: "d", commands: []command{{CmdChunk, "x", ok}}},
		"type zero":          {name: "d", commands: []command{{0, "x", ok}}},
		"ignorable bit":      {name: "d", commands: []command{{IgnorableFlag | 0x70, "x", ok}}},
		"type twice":         {name: "d", commands: []command{{0x70, "x", ok}, {0x70, "y", ok}}},
		"no handler":         {name: "d", commands: []command{{0x70, "x", nil}}},
		"no command name":    {name: "d", commands: []command{{0x70, "", ok}}},
		"bucket taken":       {name: "d", buckets: [][]byte{bucketTriplets}},
		"chunk bucket taken": {name: "d", buckets: [][]byte{bucketChunkDone}},
		"bucket twice":       {name: "d", buckets: [][]byte{[]byte("b"), []byte("b")}},
		"empty bucket":       {name: "d", buckets: [][]byte{{}}},
	} {
		reg := defaultRegistry.clone()
		// Each conflicting domain also carries a valid command and bucket,
		// which must not be registered either.
		d.commands = append(d.commands, command{0x71, "valid", ok})
		d.buckets = append(d.buckets, []byte("valid_bucket"))
		if err := reg.register(d); err == nil {
			t.Errorf("%s: registered", name)
			continue
		}
		if reg.commands[0x71] != nil || reg.bucketOwner["valid_bucket"] != "" || len(reg.domains) != len(defaultRegistry.domains) {
			t.Errorf("%s: a refused domain was partly registered", name)
		}
	}
	// clone keeps the default registry as it was.
	if defaultRegistry.commands[0x71] != nil {
		t.Error("registering into a clone changed defaultRegistry")
	}
}

// TestLogFormatUnchanged pins the type bytes, names and encodings of the
// commands in the log of existing clusters, and the buckets in their
// snapshots: a node upgraded in place replays its log with them. The
// entries below were produced by the encoders before the FSM was split
// into domains (commit ea3705d).
func TestLogFormatUnchanged(t *testing.T) {
	var types []string
	for i, c := range defaultRegistry.commands {
		if c != nil {
			if int(c.typ) != i {
				t.Errorf("command %s registered at %d", c.name, i)
			}
			types = append(types, CommandType(i).String())
		}
	}
	// Types 5 and 6 came with the allow and block lists, 7 to 11 with
	// the quarantine, 12 with the quarantine report's time.
	if want := []string{"greylist_put_triplet", "greylist_put_network", "expire", "chunk", "lists_put", "lists_delete",
		"quarantine_put", "quarantine_claim", "quarantine_confirm", "quarantine_unclaim", "quarantine_delete",
		"quarantine_report_sent"}; !slices.Equal(types, want) {
		t.Errorf("types 1.. are %v, want %v", types, want)
	}
	if got, want := EncodeQuarantineReportSent(quarantine.ReportSentRequest{At: t0}), []byte("\x8c{\"at\":\"2026-11-23T12:00:00Z\"}"); !bytes.Equal(got, want) {
		t.Errorf("report_sent encodes as %q, want %q", got, want)
	}
	var buckets []string
	for b := range defaultRegistry.bucketOwner {
		buckets = append(buckets, b)
	}
	slices.Sort(buckets)
	if want := []string{"chunk_done", "chunk_parts", "chunk_sets", "greylist_networks", "greylist_triplets", "lists",
		"quarantine_bodies", "quarantine_entries", "quarantine_stats"}; !slices.Equal(buckets, want) {
		t.Errorf("buckets %v, want %v", buckets, want)
	}

	tr := greylist.Triplet{FirstSeen: t0, LastSeen: t0.Add(time.Minute), PassedAt: t0.Add(5 * time.Minute), ExpiresAt: t0.Add(time.Hour)}
	nw := greylist.Network{Passes: 5, AllowedUntil: t0.Add(time.Hour), ExpiresAt: t0.Add(2 * time.Hour)}
	old := []struct {
		name      string
		got, want []byte
	}{
		{"put triplet", EncodePutTriplet("192.0.2.0/24|1:a|b", tr),
			[]byte("\x01{\"k\":\"192.0.2.0/24|1:a|b\",\"t\":{\"FirstSeen\":\"2026-11-23T12:00:00Z\",\"LastSeen\":\"2026-11-23T12:01:00Z\",\"PassedAt\":\"2026-11-23T12:05:00Z\",\"ExpiresAt\":\"2026-11-23T13:00:00Z\"}}")},
		{"put network", EncodePutNetwork("192.0.2.0/24", nw),
			[]byte("\x02{\"n\":\"192.0.2.0/24\",\"s\":{\"Passes\":5,\"AllowedUntil\":\"2026-11-23T13:00:00Z\",\"ExpiresAt\":\"2026-11-23T14:00:00Z\"}}")},
		{"expire", EncodeExpire(t0),
			[]byte("\x03{\"now\":\"2026-11-23T12:00:00Z\"}")},
		{"chunk", EncodeChunk(ChunkID{1, 2}, 1, 3, t0, []byte("data")),
			[]byte("\x04\x01\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x03\x18\xea\xaa\xcdA;\x80\x00data")},
	}
	f := newTestFSM(t)
	for _, c := range old {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s encodes as %q, was %q", c.name, c.got, c.want)
		}
		mustApply(t, f, c.want)
	}
	if got, ok, _ := f.GetTriplet("192.0.2.0/24|1:a|b"); !ok || !got.PassedAt.Equal(tr.PassedAt) {
		t.Errorf("old put-triplet entry read back as %+v, %v", got, ok)
	}
	if got, ok, _ := f.GetNetwork("192.0.2.0/24"); !ok || got.Passes != 5 {
		t.Errorf("old put-network entry read back as %+v, %v", got, ok)
	}
	if _, sets, _ := chunkState(t, f); sets != 1 {
		t.Errorf("old chunk entry: %d chunk sets, want 1", sets)
	}
}

func TestUnknownDomainCommand(t *testing.T) {
	// A command of a domain this node does not have (a newer version's):
	// stops the node unless sent ignorable, in which case it is counted and
	// skipped, while a node with the domain applies it.
	allow := newListDomain("allow", 0x70)
	older, newer := newTestFSM(t), newTestFSMWith(t, registryWith(t, allow))
	mustPanic(t, "unknown domain's command", func() { apply(older, allow.encodePut("a.example", t0)) })

	cmd := allow.encodePut("a.example", t0)
	cmd[0] |= byte(IgnorableFlag)
	before := dump(t, older)
	if resp := apply(older, cmd); resp != nil {
		t.Errorf("ignorable unknown: response %v", resp)
	}
	if older.IgnoredCommands() != 1 || !reflect.DeepEqual(before, dump(t, older)) {
		t.Errorf("ignored %d, state changed %v", older.IgnoredCommands(), !reflect.DeepEqual(before, dump(t, older)))
	}
	mustApply(t, newer, cmd)
	if newer.IgnoredCommands() != 0 || !allow.has(t, newer, "a.example") {
		t.Error("the node with the domain did not apply its command")
	}
}

func TestExpireDispatchesToEveryDomain(t *testing.T) {
	allow, block := newListDomain("allow", 0x70), newListDomain("block", 0x71)
	reg := registryWith(t, allow, block)
	// A domain without an expiry rule is skipped.
	if err := reg.register(domain{name: "static", buckets: [][]byte{[]byte("static")}}); err != nil {
		t.Fatal(err)
	}
	f := newTestFSMWith(t, reg)
	now := t0.Add(time.Hour)
	mustApply(t, f, EncodePutTriplet("dead", triplet(now)))
	mustApply(t, f, EncodePutTriplet("alive", triplet(now.Add(time.Second))))
	mustApply(t, f, EncodePutNetwork("dead", greylist.Network{Passes: 1, ExpiresAt: now.Add(-time.Hour)}))
	mustApply(t, f, EncodeChunk(ChunkID{1}, 0, 2, now, []byte("x")))
	mustApply(t, f, allow.encodePut("dead", now))
	mustApply(t, f, allow.encodePut("alive", now.Add(time.Nanosecond)))
	mustApply(t, f, block.encodePut("dead1", now.Add(-time.Hour)))
	mustApply(t, f, block.encodePut("dead2", now))

	resp := mustApply(t, f, EncodeExpire(now))
	want := ExpireResult{"triplets": 1, "networks": 1, "chunks": 1, "allow": 1, "block": 2, "quarantine": 0}
	if !reflect.DeepEqual(resp, want) {
		t.Errorf("expire response %v, want %v", resp, want)
	}
	for _, l := range []*listDomain{allow, block} {
		if len(l.expired) != 1 || !l.expired[0].Equal(now) {
			t.Errorf("%s's expiry rule called with %v, want once with the command's time %v", l.name, l.expired, now)
		}
	}
	if !allow.has(t, f, "alive") || allow.has(t, f, "dead") || block.has(t, f, "dead1") || block.has(t, f, "dead2") {
		t.Error("a domain's expiry rule did not run on its own entries")
	}
	if _, ok, _ := f.GetTriplet("alive"); !ok {
		t.Error("greylist expiry removed a live triplet")
	}
	if _, ok, _ := f.GetTriplet("dead"); ok {
		t.Error("greylist expiry kept a dead triplet")
	}
}

// The greylist domain's expiry rule is the greylist package's: whatever
// Expired says, CmdExpire does.
func TestGreylistExpiryIsGreylistsRule(t *testing.T) {
	f := newTestFSM(t)
	now := t0.Add(time.Hour)
	var triplets []greylist.Triplet
	var networks []greylist.Network
	for _, d := range []time.Duration{-time.Hour, -time.Nanosecond, 0, time.Nanosecond, time.Hour} {
		triplets = append(triplets, greylist.Triplet{FirstSeen: t0, ExpiresAt: now.Add(d)})
		for _, a := range []time.Duration{-time.Hour, 0, time.Nanosecond} {
			networks = append(networks, greylist.Network{Passes: 1, ExpiresAt: now.Add(d), AllowedUntil: now.Add(a)})
		}
	}
	networks = append(networks, greylist.Network{Passes: 1})
	for i, tr := range triplets {
		mustApply(t, f, EncodePutTriplet(string(rune('a'+i)), tr))
	}
	for i, n := range networks {
		mustApply(t, f, EncodePutNetwork(string(rune('a'+i)), n))
	}
	mustApply(t, f, EncodeExpire(now))
	for i, tr := range triplets {
		if _, ok, _ := f.GetTriplet(string(rune('a' + i))); ok == tr.Expired(now) {
			t.Errorf("triplet expiring at %v: kept %v, greylist says expired %v", tr.ExpiresAt, ok, tr.Expired(now))
		}
	}
	for i, n := range networks {
		if _, ok, _ := f.GetNetwork(string(rune('a' + i))); ok == n.Expired(now) {
			t.Errorf("network %+v: kept %v, greylist says expired %v", n, ok, n.Expired(now))
		}
	}
}

func TestSnapshotRoundTripAcrossDomains(t *testing.T) {
	allow := newListDomain("allow", 0x70)
	reg := registryWith(t, allow)
	src := newTestFSMWith(t, reg)
	populate(t, src, 50)
	for _, k := range []string{"a.example", "b.example", "c.example"} {
		mustApply(t, src, allow.encodePut(k, t0.Add(time.Hour)))
	}
	// Half of a chunked command of the new domain.
	parts, err := SplitCommand(padList(allow, "chunked.example"), ChunkID{7}, t0.Add(time.Hour))
	if err != nil || len(parts) != 2 {
		t.Fatalf("SplitCommand: %d parts, %v", len(parts), err)
	}
	mustApply(t, src, parts[0])
	want := dump(t, src)
	data := snapshot(t, src)

	dst := newTestFSMWith(t, reg)
	mustApply(t, dst, allow.encodePut("only-in-dst", t0))
	if err := dst.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, dst); !reflect.DeepEqual(got, want) {
		t.Errorf("restored state differs:\n%v\nwant\n%v", got, want)
	}
	if allow.has(t, dst, "only-in-dst") {
		t.Error("restore kept a domain's state that was not in the snapshot")
	}
	mustApply(t, dst, parts[1])
	if d := dump(t, dst)[string(allow.bucket)]; len(d) != 4 {
		t.Errorf("the new domain's chunked command did not complete after restore: %d entries", len(d))
	}
}

// padList returns a put command of allow larger than MaxEntrySize (the key
// is followed by NUL padding, which the handler ignores).
func padList(allow *listDomain, key string) []byte {
	cmd := allow.encodePut(key, t0.Add(time.Hour))
	return append(cmd, make([]byte, MaxEntrySize)...)
}

// A node upgraded to a version with a new domain restores a snapshot
// taken before the domain existed: the domain starts empty and works.
func TestRestoreOlderSnapshotAddsNewDomain(t *testing.T) {
	data, err := os.ReadFile(goldenSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	allow := newListDomain("allow", 0x70)
	f := newTestFSMWith(t, registryWith(t, allow))
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	d := dump(t, f)
	if b, ok := d[string(allow.bucket)]; !ok || len(b) != 0 {
		t.Errorf("new domain's bucket after restoring an older snapshot: present %v, %d entries", ok, len(b))
	}
	if len(d["greylist_triplets"]) == 0 {
		t.Error("the older snapshot's greylist state is missing")
	}
	mustApply(t, f, allow.encodePut("a.example", t0))
	if !allow.has(t, f, "a.example") {
		t.Error("the new domain does not work after the restore")
	}
}

// Forwarded expire responses are JSON. A leader of the version before
// domains answered with a struct ({"Triplets":1,...}); one of this version
// answers with lower-case names, which the struct of the older version
// also reads (encoding/json matches field names without case).
func TestForwardedExpireResponseAcrossVersions(t *testing.T) {
	cmd := EncodeExpire(t0)
	got, err := decodeResponse(cmd, []byte(`{"Triplets":1,"Networks":2,"Chunks":3}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := (ExpireResult{"triplets": 1, "networks": 2, "chunks": 3}); !reflect.DeepEqual(got, want) {
		t.Errorf("older leader's response decoded as %v, want %v", got, want)
	}

	body, err := json.Marshal(ExpireResult{"triplets": 4, "networks": 5, "chunks": 6})
	if err != nil {
		t.Fatal(err)
	}
	var older struct{ Triplets, Networks, Chunks int }
	if err := json.Unmarshal(body, &older); err != nil || older.Triplets != 4 || older.Networks != 5 || older.Chunks != 6 {
		t.Errorf("an older follower reads %s as %+v, %v", body, older, err)
	}
	if got, err := decodeResponse(cmd, body); err != nil || !reflect.DeepEqual(got, ExpireResult{"triplets": 4, "networks": 5, "chunks": 6}) {
		t.Errorf("this version's response decoded as %v, %v", got, err)
	}
}
