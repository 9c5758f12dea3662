package cluster

// The greylist's replicated state: triplets and client networks, written by
// the greylister through GreylistStore and expired by the greylist
// package's own rule (greylist.Triplet.Expired, greylist.Network.Expired).

import (
	"context"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mxgate/mxgate/greylist"
)

// The greylist's command types; part of the log format (see CommandType).
const (
	CmdGreylistPutTriplet CommandType = 1
	CmdGreylistPutNetwork CommandType = 2
)

// The greylist's buckets; part of the snapshot format.
var (
	bucketTriplets = []byte("greylist_triplets") // key -> JSON greylist.Triplet
	bucketNetworks = []byte("greylist_networks") // network -> JSON greylist.Network
)

func init() {
	registerDomain(domain{
		name:    "greylist",
		buckets: [][]byte{bucketTriplets, bucketNetworks},
		commands: []command{
			{CmdGreylistPutTriplet, "greylist_put_triplet", applyPutTriplet},
			{CmdGreylistPutNetwork, "greylist_put_network", applyPutNetwork},
		},
		expire: expireGreylist,
	})
}

// putTripletCmd is the payload of CmdGreylistPutTriplet.
type putTripletCmd struct {
	Key     string           `json:"k"`
	Triplet greylist.Triplet `json:"t"`
}

// putNetworkCmd is the payload of CmdGreylistPutNetwork.
type putNetworkCmd struct {
	Network string           `json:"n"`
	State   greylist.Network `json:"s"`
}

// EncodePutTriplet returns the command storing t under key.
func EncodePutTriplet(key string, t greylist.Triplet) []byte {
	return encodeJSON(CmdGreylistPutTriplet, putTripletCmd{Key: key, Triplet: t})
}

// EncodePutNetwork returns the command storing n for network.
func EncodePutNetwork(network string, n greylist.Network) []byte {
	return encodeJSON(CmdGreylistPutNetwork, putNetworkCmd{Network: network, State: n})
}

func applyPutTriplet(_ *FSM, tx *bolt.Tx, payload []byte) any {
	var c putTripletCmd
	decodeJSON(CmdGreylistPutTriplet, payload, &c)
	if err := checkKey("triplet key", c.Key); err != nil {
		return err
	}
	return putJSON(tx.Bucket(bucketTriplets), c.Key, c.Triplet)
}

func applyPutNetwork(_ *FSM, tx *bolt.Tx, payload []byte) any {
	var c putNetworkCmd
	decodeJSON(CmdGreylistPutNetwork, payload, &c)
	if err := checkKey("network", c.Network); err != nil {
		return err
	}
	return putJSON(tx.Bucket(bucketNetworks), c.Network, c.State)
}

// expireGreylist drops the triplets and networks the greylister would
// treat as absent at now. A value that does not decode is dropped too:
// unreadable state is of no use to anyone.
func expireGreylist(tx *bolt.Tx, now time.Time) map[string]int {
	return map[string]int{
		"triplets": deleteWhere(tx.Bucket(bucketTriplets), func(v []byte) bool {
			var t greylist.Triplet
			return json.Unmarshal(v, &t) != nil || t.Expired(now)
		}),
		"networks": deleteWhere(tx.Bucket(bucketNetworks), func(v []byte) bool {
			var n greylist.Network
			return json.Unmarshal(v, &n) != nil || n.Expired(now)
		}),
	}
}

// GetTriplet returns the stored triplet for key.
func (f *FSM) GetTriplet(key string) (greylist.Triplet, bool, error) {
	var t greylist.Triplet
	ok, err := f.get(bucketTriplets, key, &t)
	return t, ok, err
}

// GetNetwork returns the stored state of a client network.
func (f *FSM) GetNetwork(network string) (greylist.Network, bool, error) {
	var n greylist.Network
	ok, err := f.get(bucketNetworks, network, &n)
	return n, ok, err
}

// DefaultWriteTimeout bounds a GreylistStore write whose context has no
// deadline: without quorum a write would otherwise wait forever, and the
// greylister must get its error to fail open.
const DefaultWriteTimeout = 5 * time.Second

// GreylistStore is the greylist.Store of a cluster node: reads come from
// the node's local FSM (possibly slightly behind the leader), writes are
// committed through the leader. Without quorum a write returns an error
// once its context (or WriteTimeout) ends, and the greylister fails open.
type GreylistStore struct {
	node *Node
	// WriteTimeout applies when the context has no deadline; zero means
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
}

var _ greylist.Store = (*GreylistStore)(nil)

// NewGreylistStore returns the greylist store backed by n.
func NewGreylistStore(n *Node) *GreylistStore { return &GreylistStore{node: n} }

// GetTriplet implements greylist.Store.
func (s *GreylistStore) GetTriplet(_ context.Context, key string) (greylist.Triplet, bool, error) {
	return s.node.fsm.GetTriplet(key)
}

// GetNetwork implements greylist.Store.
func (s *GreylistStore) GetNetwork(_ context.Context, network string) (greylist.Network, bool, error) {
	return s.node.fsm.GetNetwork(network)
}

// PutTriplet implements greylist.Store.
func (s *GreylistStore) PutTriplet(ctx context.Context, key string, t greylist.Triplet) error {
	return s.apply(ctx, EncodePutTriplet(key, t))
}

// PutNetwork implements greylist.Store.
func (s *GreylistStore) PutNetwork(ctx context.Context, network string, n greylist.Network) error {
	return s.apply(ctx, EncodePutNetwork(network, n))
}

func (s *GreylistStore) apply(ctx context.Context, cmd []byte) error {
	if _, ok := ctx.Deadline(); !ok {
		timeout := s.WriteTimeout
		if timeout <= 0 {
			timeout = DefaultWriteTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	_, err := s.node.Apply(ctx, cmd)
	return err
}
