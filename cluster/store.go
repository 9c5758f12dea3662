package cluster

import (
	"context"
	"time"

	"github.com/mxgate/mxgate/greylist"
)

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
