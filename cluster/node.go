package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// NodeConfig configures one cluster node.
type NodeConfig struct {
	// ID is the node's Raft server ID; it must stay the same across
	// restarts for the node to rejoin as the same voter.
	ID string
	// Dir holds wal/ (Raft's log and stable store, raft-wal), snapshots/
	// and fsm/.
	Dir string
	// RaftAddr is the host:port to bind for Raft and write forwarding
	// (one port, see mux.go).
	RaftAddr string
	// ServerTLS and ClientTLS secure the node port (see TLS.ServerConfig
	// and TLS.ClientConfig). Both nil means plain TCP, which only tests
	// use; mxgate's configuration always sets them.
	ServerTLS, ClientTLS *tls.Config
	// AdvertiseAddr is the address other nodes reach this one at; empty
	// means the bound address, which then must not be unspecified (0.0.0.0).
	AdvertiseAddr string
	// Bootstrap makes a node with no Raft state yet create the cluster
	// configuration from Peers (which must include this node). It is
	// ignored when Dir already has state, so it is safe on restarts.
	// Cluster.Start leaves it false and bootstraps later, once gossip has
	// found bootstrap_expect nodes.
	Bootstrap bool
	Peers     []raft.Server
	// Logger receives Raft's log lines; nil discards them.
	Logger *slog.Logger
	// ConfigureRaft, if set, adjusts the Raft configuration after the
	// defaults are filled in (tests shorten the timeouts with it).
	ConfigureRaft func(*raft.Config)
}

// Node is a running Raft member with the FSM of this package.
type Node struct {
	id   string
	log  *slog.Logger
	raft *raft.Raft
	fsm  *FSM
	logs walStore
	// walMeta is raft-wal's metadata store, opened here because
	// WAL.Close does not close it (its bbolt file lock would outlive the
	// node and block a restart in the same process).
	walMeta *metadb.BoltMetaDB
	mux     *mux
	trans   *raft.NetworkTransport
	snaps   raft.SnapshotStore

	started  time.Time
	fwdPool  connPool
	observer *raft.Observer

	// ctx ends at Shutdown; forwarded writes being served use it.
	ctx    context.Context
	cancel context.CancelFunc
	// ready is closed once raft is set: the listener accepts (and may
	// receive forwarded writes) before Raft is started.
	ready chan struct{}

	shutdownOnce sync.Once
	shutdownErr  error
}

const (
	snapshotsRetained = 2
	transportMaxPool  = 3
	transportTimeout  = 10 * time.Second
	membershipTimeout = 10 * time.Second
)

// StartNode opens (or creates) the node's state in cfg.Dir, binds
// cfg.RaftAddr and starts Raft.
func StartNode(cfg NodeConfig) (*Node, error) {
	if cfg.ID == "" || cfg.Dir == "" || cfg.RaftAddr == "" {
		return nil, errors.New("cluster: node needs ID, Dir and RaftAddr")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: data dir: %w", err)
	}
	logger := cfg.Logger
	hlog := hclog.NewNullLogger()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	} else {
		hlog = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Info, DisableTime: true,
			Output: levelWriter{log: logger, component: "raft", info: slog.LevelInfo}})
	}

	ln, err := net.Listen("tcp", cfg.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("cluster: listening on %s: %w", cfg.RaftAddr, err)
	}
	advertise, err := advertiseAddr(cfg.AdvertiseAddr, ln.Addr())
	if err != nil {
		ln.Close()
		return nil, err
	}

	n := &Node{id: cfg.ID, log: logger, ready: make(chan struct{}), started: time.Now()}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	var closers []func() error
	fail := func(err error) (*Node, error) {
		n.cancel()
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i]()
		}
		return nil, err
	}

	if (cfg.ServerTLS == nil) != (cfg.ClientTLS == nil) {
		ln.Close()
		return nil, errors.New("cluster: ServerTLS and ClientTLS go together")
	}
	n.mux = newMux(ln, advertise, cfg.ServerTLS, cfg.ClientTLS, n.serveForward)
	closers = append(closers, func() error { err := n.mux.Close(); n.mux.wait(); return err })

	walDir := filepath.Join(cfg.Dir, "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return fail(fmt.Errorf("cluster: raft log dir: %w", err))
	}
	n.walMeta = &metadb.BoltMetaDB{}
	closers = append(closers, n.walMeta.Close)
	w, err := wal.Open(walDir, wal.WithLogger(hlog.Named("wal")), wal.WithMetaStore(n.walMeta))
	if err != nil {
		return fail(fmt.Errorf("cluster: raft log in %s: %w", walDir, err))
	}
	n.logs = walStore{w}
	closers = append(closers, n.logs.Close)

	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, snapshotsRetained, hlog)
	if err != nil {
		return fail(fmt.Errorf("cluster: snapshot store: %w", err))
	}
	n.snaps = snaps
	if n.fsm, err = NewFSM(filepath.Join(cfg.Dir, "fsm")); err != nil {
		return fail(err)
	}
	closers = append(closers, n.fsm.Close)

	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  n.mux,
		MaxPool: transportMaxPool,
		Timeout: transportTimeout,
		Logger:  hlog,
	})
	closers = append(closers, n.trans.Close)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	// Buffer proposals so that writes arriving together (many SMTP
	// sessions greylisting at once) reach the log, the followers and the
	// FSM (ApplyBatch) as one batch.
	rc.BatchApplyCh = true
	if cfg.ConfigureRaft != nil {
		cfg.ConfigureRaft(rc)
	}

	if cfg.Bootstrap {
		existing, err := raft.HasExistingState(n.logs, n.logs, snaps)
		if err != nil {
			return fail(fmt.Errorf("cluster: checking raft state: %w", err))
		}
		if !existing {
			peers := cfg.Peers
			if len(peers) == 0 {
				peers = []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: raft.ServerAddress(advertise.String())}}
			}
			if !hasServer(peers, rc.LocalID) {
				return fail(fmt.Errorf("cluster: bootstrap peers do not include this node %q", cfg.ID))
			}
			err := raft.BootstrapCluster(rc, n.logs, n.logs, snaps, n.trans, raft.Configuration{Servers: peers})
			if err != nil {
				return fail(fmt.Errorf("cluster: bootstrap: %w", err))
			}
		}
	}

	if n.raft, err = raft.NewRaft(rc, n.fsm, n.logs, n.logs, snaps, n.trans); err != nil {
		return fail(fmt.Errorf("cluster: starting raft: %w", err))
	}
	n.observeLeaderChanges()
	close(n.ready)
	logger.Info("cluster node started", "id", cfg.ID, "addr", advertise.String(), "dir", cfg.Dir)
	return n, nil
}

func advertiseAddr(configured string, bound net.Addr) (net.Addr, error) {
	if configured != "" {
		a, err := net.ResolveTCPAddr("tcp", configured)
		if err != nil {
			return nil, fmt.Errorf("cluster: advertise address: %w", err)
		}
		bound = a
	}
	if a, ok := bound.(*net.TCPAddr); !ok || a.IP == nil || a.IP.IsUnspecified() {
		return nil, fmt.Errorf("cluster: %s is not an address other nodes can reach; set AdvertiseAddr", bound)
	}
	return bound, nil
}

func hasServer(servers []raft.Server, id raft.ServerID) bool {
	for _, s := range servers {
		if s.ID == id {
			return true
		}
	}
	return false
}

// Shutdown stops Raft, the listener and forwarded writes in progress, and
// closes the stores. It is safe to call more than once.
func (n *Node) Shutdown() error {
	n.shutdownOnce.Do(func() {
		err := n.raft.Shutdown().Error()
		n.raft.DeregisterObserver(n.observer)
		n.cancel()
		n.fwdPool.close()
		_ = n.mux.Close()
		n.mux.wait()
		n.shutdownErr = errors.Join(err, n.trans.Close(), n.logs.Close(), n.walMeta.Close(), n.fsm.Close())
	})
	return n.shutdownErr
}

// ID is the node's server ID.
func (n *Node) ID() string { return n.id }

// Addr is the address the node advertises for Raft and forwarding.
func (n *Node) Addr() string { return n.mux.Addr().String() }

// FSM is the node's local state, for reads.
func (n *Node) FSM() *FSM { return n.fsm }

// Leader returns the current leader's ID and address, empty when none is
// known.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// State is this node's Raft state.
func (n *Node) State() raft.RaftState { return n.raft.State() }

// AddVoter adds (or re-addresses) a voter; only the leader can.
func (n *Node) AddVoter(id, addr string) error {
	return n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, membershipTimeout).Error()
}

// RemoveServer removes a server from the configuration; only the leader
// can.
func (n *Node) RemoveServer(id string) error {
	return n.raft.RemoveServer(raft.ServerID(id), 0, membershipTimeout).Error()
}

// HasState reports whether the node has any Raft state: it bootstrapped,
// was added to a cluster, or restarted from a data dir that had either.
// A node with state never bootstraps.
func (n *Node) HasState() bool {
	last := n.raft.LastIndex()
	if last > 0 {
		return true
	}
	f := n.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

// Configuration is the current Raft configuration (the voters).
func (n *Node) Configuration() ([]raft.Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("cluster: raft configuration: %w", err)
	}
	return f.Configuration().Servers, nil
}

// BootstrapCluster creates the cluster's first configuration on a node
// with no state; every node of the first set calls it with the same
// servers (Raft's documented way of forming a cluster).
func (n *Node) BootstrapCluster(servers []raft.Server) error {
	return n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
}

// observeLeaderChanges counts leader changes in the metrics.
func (n *Node) observeLeaderChanges() {
	ch := make(chan raft.Observation, 16)
	n.observer = raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(n.observer)
	go func() {
		var last raft.ServerID
		for {
			select {
			case o := <-ch:
				lo := o.Data.(raft.LeaderObservation)
				if lo.LeaderID != last {
					last = lo.LeaderID
					metricLeaderChanges.Inc()
					if lo.LeaderID != "" {
						n.log.Info("raft leader", "event", "cluster_leader", "leader", string(lo.LeaderID), "addr", string(lo.LeaderAddr))
					}
				}
			case <-n.ctx.Done():
				return
			}
		}
	}()
}

// walStore is raft-wal's log store answering ErrLogNotFound below its
// first index. raft-wal compacts lazily, by whole segments, and its GetLog
// still returns entries that DeleteRange removed while their segment
// lives; a leader then replays the whole old log to a new node instead of
// sending it a snapshot, which both costs more and leaves the snapshot
// path untested in practice.
type walStore struct{ *wal.WAL }

func (s walStore) GetLog(index uint64, l *raft.Log) error {
	first, err := s.FirstIndex()
	if err != nil {
		return err
	}
	if index < first {
		return raft.ErrLogNotFound
	}
	return s.WAL.GetLog(index, l)
}

// leaderlessFor is how long this node has known no leader: zero while it
// knows one (or is it), else the time since it last heard from a leader,
// or since it started.
func (n *Node) leaderlessFor() time.Duration {
	if n.raft.State() == raft.Leader {
		return 0
	}
	if id, _ := n.Leader(); id != "" {
		return 0
	}
	last := n.raft.LastContact()
	if last.Before(n.started) {
		last = n.started
	}
	return time.Since(last)
}

// TransferLeadership hands leadership to another voter, so that a leader
// stopping on purpose does not leave the cluster waiting out an election
// timeout. It is a no-op on a follower.
func (n *Node) TransferLeadership() error {
	if n.raft.State() != raft.Leader {
		return nil
	}
	return n.raft.LeadershipTransfer().Error()
}
