package cluster

// The quarantine, replicated: a message quarantined through any node is
// kept by a majority before its 250, and any node lists, shows and
// releases it. The state and every change to it are the quarantine
// package's (quarantine/tx.go); this file makes them commands. Bodies over
// MaxEntrySize travel chunked (Node.Apply splits them).

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mxgate/mxgate/quarantine"
)

// The quarantine's command types; part of the log format (see
// CommandType). They are sent with IgnorableFlag, like the lists'.
const (
	CmdQuarantinePut     CommandType = 7
	CmdQuarantineClaim   CommandType = 8
	CmdQuarantineConfirm CommandType = 9
	CmdQuarantineUnclaim CommandType = 10
	CmdQuarantineDelete  CommandType = 11
	// CmdQuarantineReportSent records the time the daily report covered.
	CmdQuarantineReportSent CommandType = 12
)

func init() {
	registerDomain(domain{
		name:    "quarantine",
		buckets: quarantine.Buckets(),
		commands: []command{
			{CmdQuarantinePut, "quarantine_put", applyQuarantinePut},
			{CmdQuarantineClaim, "quarantine_claim", applyQuarantineClaim},
			{CmdQuarantineConfirm, "quarantine_confirm", applyQuarantineConfirm},
			{CmdQuarantineUnclaim, "quarantine_unclaim", applyQuarantineUnclaim},
			{CmdQuarantineDelete, "quarantine_delete", applyQuarantineDelete},
			{CmdQuarantineReportSent, "quarantine_report_sent", applyQuarantineReportSent},
		},
		expire: func(tx *bolt.Tx, now time.Time) map[string]int {
			n, err := quarantine.ExpireTx(tx, now)
			if err != nil {
				panic("cluster: expiring the quarantine: " + err.Error())
			}
			return map[string]int{"quarantine": n}
		},
	})
}

// QuarantineResult is the response of a quarantine command: the entry as
// it became, or the code and text of the quarantine error that refused
// it. A refusal is an answer, not an error of the FSM: the command wrote
// nothing, and the proposer gets the quarantine error back (errors.Is
// works on followers too).
type QuarantineResult struct {
	Entry *quarantine.Entry `json:"entry,omitempty"`
	Code  string            `json:"code,omitempty"`
	Error string            `json:"error,omitempty"`
	// ReportSent answers CmdQuarantineReportSent: the time recorded.
	ReportSent time.Time `json:"report_sent,omitzero"`
}

// EncodeQuarantinePut returns the command storing a new entry with its
// compressed body: type | uint32 BE length of the JSON request | JSON |
// body, so that the body is not inflated by base64.
func EncodeQuarantinePut(req quarantine.PutRequest, body []byte) []byte {
	meta, err := json.Marshal(req)
	if err != nil {
		panic(fmt.Sprintf("cluster: encoding %v: %v", CmdQuarantinePut, err))
	}
	b := make([]byte, 0, 5+len(meta)+len(body))
	b = append(b, byte(CmdQuarantinePut|IgnorableFlag))
	b = binary.BigEndian.AppendUint32(b, uint32(len(meta)))
	b = append(b, meta...)
	return append(b, body...)
}

// EncodeQuarantineClaim returns the command claiming an entry for release.
func EncodeQuarantineClaim(req quarantine.ClaimRequest) []byte {
	return encodeJSON(CmdQuarantineClaim|IgnorableFlag, req)
}

// EncodeQuarantineConfirm returns the command marking an entry released.
func EncodeQuarantineConfirm(req quarantine.ConfirmRequest) []byte {
	return encodeJSON(CmdQuarantineConfirm|IgnorableFlag, req)
}

// EncodeQuarantineUnclaim returns the command giving a claim up.
func EncodeQuarantineUnclaim(req quarantine.UnclaimRequest) []byte {
	return encodeJSON(CmdQuarantineUnclaim|IgnorableFlag, req)
}

// EncodeQuarantineDelete returns the command deleting an entry.
func EncodeQuarantineDelete(req quarantine.DeleteRequest) []byte {
	return encodeJSON(CmdQuarantineDelete|IgnorableFlag, req)
}

// EncodeQuarantineReportSent returns the command recording the time the
// daily report covered.
func EncodeQuarantineReportSent(req quarantine.ReportSentRequest) []byte {
	return encodeJSON(CmdQuarantineReportSent|IgnorableFlag, req)
}

// quarantineAnswer turns a quarantine transaction's outcome into the
// command's response; a storage failure panics (see doc.go).
func quarantineAnswer(t CommandType, e quarantine.Entry, err error) any {
	if err == nil {
		return QuarantineResult{Entry: &e}
	}
	if code := quarantine.Code(err); code != "" {
		return QuarantineResult{Code: code, Error: err.Error()}
	}
	panic(fmt.Sprintf("cluster: applying %v: %v", t, err))
}

func applyQuarantinePut(_ *FSM, tx *bolt.Tx, payload []byte) any {
	if len(payload) < 4 || uint64(binary.BigEndian.Uint32(payload)) > uint64(len(payload)-4) {
		panic(fmt.Sprintf("cluster: undecodable %v command: %d bytes", CmdQuarantinePut, len(payload)))
	}
	n := binary.BigEndian.Uint32(payload)
	var req quarantine.PutRequest
	decodeJSON(CmdQuarantinePut, payload[4:4+n], &req)
	e, err := quarantine.PutTx(tx, req, payload[4+n:])
	return quarantineAnswer(CmdQuarantinePut, e, err)
}

func applyQuarantineClaim(_ *FSM, tx *bolt.Tx, payload []byte) any {
	var req quarantine.ClaimRequest
	decodeJSON(CmdQuarantineClaim, payload, &req)
	e, err := quarantine.ClaimTx(tx, req)
	return quarantineAnswer(CmdQuarantineClaim, e, err)
}

func applyQuarantineConfirm(_ *FSM, tx *bolt.Tx, payload []byte) any {
	var req quarantine.ConfirmRequest
	decodeJSON(CmdQuarantineConfirm, payload, &req)
	e, err := quarantine.ConfirmTx(tx, req)
	return quarantineAnswer(CmdQuarantineConfirm, e, err)
}

func applyQuarantineUnclaim(_ *FSM, tx *bolt.Tx, payload []byte) any {
	var req quarantine.UnclaimRequest
	decodeJSON(CmdQuarantineUnclaim, payload, &req)
	e, err := quarantine.UnclaimTx(tx, req)
	return quarantineAnswer(CmdQuarantineUnclaim, e, err)
}

func applyQuarantineDelete(_ *FSM, tx *bolt.Tx, payload []byte) any {
	var req quarantine.DeleteRequest
	decodeJSON(CmdQuarantineDelete, payload, &req)
	e, err := quarantine.DeleteTx(tx, req)
	return quarantineAnswer(CmdQuarantineDelete, e, err)
}

func applyQuarantineReportSent(_ *FSM, tx *bolt.Tx, payload []byte) any {
	var req quarantine.ReportSentRequest
	decodeJSON(CmdQuarantineReportSent, payload, &req)
	at, err := quarantine.ReportSentTx(tx, req)
	if err != nil {
		return quarantineAnswer(CmdQuarantineReportSent, quarantine.Entry{}, err)
	}
	return QuarantineResult{ReportSent: at}
}

// view runs fn in a read transaction of this node's copy.
func (f *FSM) view(fn func(tx *bolt.Tx) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.db.View(fn)
}

// DefaultQuarantineWriteTimeout bounds a quarantine write whose context
// has no deadline.
const DefaultQuarantineWriteTimeout = 30 * time.Second

// QuarantineStore is the quarantine.Store of a cluster node: reads from
// the local copy, writes committed by a majority through the leader.
// Without quorum a write fails (at once once the node has been without a
// leader for a few seconds), and the SMTP session answers 451.
type QuarantineStore struct {
	node     *Node
	maxBytes int64
}

var _ quarantine.Store = (*QuarantineStore)(nil)

// NewQuarantineStore returns the quarantine store backed by n; maxBytes
// caps the compressed bodies (0: no cap).
func NewQuarantineStore(n *Node, maxBytes int64) *QuarantineStore {
	return &QuarantineStore{node: n, maxBytes: maxBytes}
}

func (s *QuarantineStore) apply(ctx context.Context, cmd []byte) (quarantine.Entry, error) {
	r, err := s.applyResult(ctx, cmd)
	if err != nil {
		return quarantine.Entry{}, err
	}
	if r.Entry == nil {
		return quarantine.Entry{}, fmt.Errorf("quarantine: empty response from the leader (an older version?)")
	}
	return *r.Entry, nil
}

// applyResult commits cmd and returns its result, or the quarantine
// error it was refused with.
func (s *QuarantineStore) applyResult(ctx context.Context, cmd []byte) (QuarantineResult, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultQuarantineWriteTimeout)
		defer cancel()
	}
	resp, err := s.node.Apply(ctx, cmd)
	if err != nil {
		return QuarantineResult{}, fmt.Errorf("quarantine: %w", err)
	}
	var r QuarantineResult
	switch v := resp.(type) {
	case QuarantineResult:
		r = v
	default: // forwarded: decoded from JSON as a map
		b, err := json.Marshal(v)
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil {
			return QuarantineResult{}, fmt.Errorf("quarantine: response %v: %w", resp, err)
		}
	}
	if r.Code != "" {
		return QuarantineResult{}, quarantine.ErrorOf(r.Code, r.Error)
	}
	return r, nil
}

// Put implements quarantine.Store.
func (s *QuarantineStore) Put(ctx context.Context, e quarantine.Entry, body io.Reader) (quarantine.Entry, error) {
	z, size, err := quarantine.Compress(body)
	if err != nil {
		return quarantine.Entry{}, err
	}
	e.Size = size
	return s.apply(ctx, EncodeQuarantinePut(quarantine.PutRequest{Entry: e, MaxBytes: s.maxBytes}, z))
}

// Get implements quarantine.Store.
func (s *QuarantineStore) Get(_ context.Context, id string) (quarantine.Entry, error) {
	var e quarantine.Entry
	err := s.node.fsm.view(func(tx *bolt.Tx) error {
		var err error
		e, err = quarantine.GetTx(tx, id)
		return err
	})
	return e, err
}

// List implements quarantine.Store.
func (s *QuarantineStore) List(_ context.Context, f quarantine.Filter) (quarantine.Page, error) {
	var p quarantine.Page
	err := s.node.fsm.view(func(tx *bolt.Tx) error {
		var err error
		p, err = quarantine.ListTx(tx, f)
		return err
	})
	return p, err
}

// Body implements quarantine.Store.
func (s *QuarantineStore) Body(_ context.Context, id string) (io.ReadCloser, error) {
	var z []byte
	err := s.node.fsm.view(func(tx *bolt.Tx) error {
		var err error
		z, err = quarantine.BodyTx(tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return quarantine.Decompress(z)
}

// Delete implements quarantine.Store.
func (s *QuarantineStore) Delete(ctx context.Context, id, by string, at time.Time) (quarantine.Entry, error) {
	return s.apply(ctx, EncodeQuarantineDelete(quarantine.DeleteRequest{ID: id, By: by, At: at}))
}

// Claim implements quarantine.Store.
func (s *QuarantineStore) Claim(ctx context.Context, req quarantine.ClaimRequest) (quarantine.Entry, error) {
	return s.apply(ctx, EncodeQuarantineClaim(req))
}

// Confirm implements quarantine.Store.
func (s *QuarantineStore) Confirm(ctx context.Context, req quarantine.ConfirmRequest) (quarantine.Entry, error) {
	return s.apply(ctx, EncodeQuarantineConfirm(req))
}

// Unclaim implements quarantine.Store.
func (s *QuarantineStore) Unclaim(ctx context.Context, req quarantine.UnclaimRequest) error {
	_, err := s.apply(ctx, EncodeQuarantineUnclaim(req))
	return err
}

// Expire implements quarantine.Store: the leader's CmdExpire expires the
// quarantine with every other domain, so this does nothing.
func (s *QuarantineStore) Expire(context.Context, time.Time) (int, error) { return 0, nil }

// Stats implements quarantine.Store.
func (s *QuarantineStore) Stats(context.Context) (quarantine.Stats, error) {
	var st quarantine.Stats
	err := s.node.fsm.view(func(tx *bolt.Tx) error {
		st = quarantine.StatsTx(tx)
		return nil
	})
	return st, err
}

// ReportSent implements quarantine.Store: a command, so every node (and
// the snapshots) keep the time, and a new leader reports from it.
func (s *QuarantineStore) ReportSent(ctx context.Context, at time.Time) error {
	r, err := s.applyResult(ctx, EncodeQuarantineReportSent(quarantine.ReportSentRequest{At: at}))
	if err == nil && r.ReportSent.IsZero() {
		return fmt.Errorf("quarantine: the leader did not record the report time (an older version?)")
	}
	return err
}

// LastReport implements quarantine.Store, from this node's copy.
func (s *QuarantineStore) LastReport(context.Context) (time.Time, error) {
	var t time.Time
	err := s.node.fsm.view(func(tx *bolt.Tx) error {
		t = quarantine.LastReportTx(tx)
		return nil
	})
	return t, err
}
