package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// A Cluster is one mxgate node's membership: memberlist gossip to find the
// other nodes and carry their metadata, and the Raft node (see Node) whose
// voters follow from gossip, as in Consul's leader loop:
//
//   - Bootstrap: a node with no Raft state waits until gossip shows
//     BootstrapExpect alive nodes none of which has Raft state, then
//     bootstraps with exactly those nodes. Every node of the first set does
//     the same with the same servers, which Raft documents as the way to
//     form a cluster. A node that sees any member with Raft state never
//     bootstraps: it waits for the leader to add it.
//   - The leader adds every alive gossip member that is not a voter (or is
//     one at another address) as a voter, and removes a voter whose gossip
//     state has not been alive for RemoveDeadAfter. A voter that comes back
//     after that is simply added again.
//   - The leader issues CmdExpire every ExpireInterval, carrying its clock.
//
// A node restarted with its data dir keeps its Raft state and rejoins as the
// same voter; nothing above needs to run for it.
type Cluster struct {
	cfg  Config
	log  *slog.Logger
	node *Node
	ml   *memberlist.Memberlist

	mu      sync.Mutex
	members map[string]*memberState // by node name, including dead and left
	// wakeBootstrap and wakeLeader (capacity 1) say a gossip event
	// happened, one for each loop.
	wakeBootstrap, wakeLeader chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	warned       map[string]time.Time // guarded by mu; see warnOnce
	leaving      atomic.Bool
	shutdownOnce sync.Once
	shutdownErr  error
}

// Config configures a Cluster.
type Config struct {
	// Name is the node's name: its gossip name and Raft server ID. It must
	// be unique in the cluster and stay the same across restarts.
	Name string
	// Dir holds the Raft and FSM state (see NodeConfig.Dir).
	Dir string
	// GossipBind and RaftBind are host:port to listen on.
	GossipBind, RaftBind string
	// Advertise is the host (IP) other nodes reach this one at; empty: the
	// host of the bind addresses, or a private IP of this machine when they
	// are unspecified.
	Advertise string
	// Join lists gossip addresses (host:port) of other nodes. Joining is
	// retried until one answers.
	Join []string
	// BootstrapExpect is how many nodes form the first cluster.
	BootstrapExpect int
	// SecretKey encrypts gossip (16, 24 or 32 bytes).
	SecretKey []byte
	// TLS secures Raft and write forwarding; nil is plain TCP (tests only).
	TLS *TLS
	// RemoveDeadAfter is how long a voter may be dead in gossip before the
	// leader removes it.
	RemoveDeadAfter time.Duration
	// ExpireInterval is how often the leader issues CmdExpire.
	ExpireInterval time.Duration
	// Meta is gossiped to the other nodes (Raft and HasState are filled in).
	Meta   Meta
	Logger *slog.Logger
	// ConfigureRaft and ConfigureGossip adjust the defaults (tests).
	ConfigureRaft   func(*raft.Config)
	ConfigureGossip func(*memberlist.Config)
}

// Meta is what a node tells the others about itself through gossip.
type Meta struct {
	Version string `json:"v,omitempty"`
	SMTP    string `json:"smtp,omitempty"`
	Relay   string `json:"relay,omitempty"`
	HTTP    string `json:"http,omitempty"`
	Raft    string `json:"raft"`
	// HasState: the node has Raft state, so the cluster exists and fresh
	// nodes must wait to be added instead of bootstrapping.
	HasState bool `json:"state,omitempty"`
	// Leaving: the node is shutting down; its departure is "left", not a
	// failure.
	Leaving bool `json:"leaving,omitempty"`
}

type memberState struct {
	name  string
	addr  string // gossip host:port
	state memberlist.NodeStateType
	since time.Time // when state was last entered
	meta  Meta
	// metaOK is false when the node's metadata did not decode: it is then
	// not a mxgate node of this version and is never made a voter.
	metaOK bool
}

const (
	defaultExpireInterval = time.Minute
	reconcileInterval     = time.Second
	joinRetryMin          = time.Second
	joinRetryMax          = 30 * time.Second
	leaveTimeout          = 2 * time.Second
	bootstrapWaitLog      = 30 * time.Second
)

// Start binds the gossip and node ports, starts Raft and gossip, and joins
// the seeds in the background.
func Start(cfg Config) (*Cluster, error) {
	if cfg.Name == "" || cfg.GossipBind == "" || cfg.RaftBind == "" {
		return nil, errors.New("cluster: Name, GossipBind and RaftBind are required")
	}
	if cfg.BootstrapExpect < 1 {
		cfg.BootstrapExpect = 1
	}
	if cfg.RemoveDeadAfter <= 0 {
		cfg.RemoveDeadAfter = DefaultRemoveDeadAfter
	}
	if cfg.ExpireInterval <= 0 {
		cfg.ExpireInterval = defaultExpireInterval
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	advertise, err := advertiseHost(cfg.Advertise, cfg.RaftBind)
	if err != nil {
		return nil, err
	}
	_, raftPort, err := net.SplitHostPort(cfg.RaftBind)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft address %q: %w", cfg.RaftBind, err)
	}
	nc := NodeConfig{
		ID:            cfg.Name,
		Dir:           cfg.Dir,
		RaftAddr:      cfg.RaftBind,
		AdvertiseAddr: net.JoinHostPort(advertise, raftPort),
		// A one-node cluster bootstraps at once; larger ones wait for
		// gossip (bootstrapLoop).
		Bootstrap:     cfg.BootstrapExpect == 1,
		Logger:        logger,
		ConfigureRaft: cfg.ConfigureRaft,
	}
	if cfg.TLS != nil {
		nc.ServerTLS, nc.ClientTLS = cfg.TLS.ServerConfig(), cfg.TLS.ClientConfig()
	}
	node, err := StartNode(nc)
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		cfg:           cfg,
		log:           logger,
		node:          node,
		members:       make(map[string]*memberState),
		wakeBootstrap: make(chan struct{}, 1),
		wakeLeader:    make(chan struct{}, 1),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.cfg.Meta.Raft = node.Addr()
	for _, a := range []*string{&c.cfg.Meta.SMTP, &c.cfg.Meta.Relay, &c.cfg.Meta.HTTP} {
		*a = withHost(*a, advertise)
	}

	mc, err := c.gossipConfig(advertise)
	if err != nil {
		c.cancel()
		_ = node.Shutdown()
		return nil, err
	}
	if c.ml, err = memberlist.Create(mc); err != nil {
		c.cancel()
		_ = node.Shutdown()
		return nil, fmt.Errorf("cluster: gossip on %s: %w", cfg.GossipBind, err)
	}
	c.log.Info("cluster gossip started", "event", "cluster_start", "gossip", c.GossipAddr(),
		"raft", node.Addr(), "bootstrap_expect", cfg.BootstrapExpect, "has_state", node.HasState())

	c.goRun(c.joinLoop)
	c.goRun(c.bootstrapLoop)
	c.goRun(c.leaderLoop)
	c.goRun(c.metricsLoop)
	return c, nil
}

func (c *Cluster) goRun(f func()) {
	c.wg.Add(1)
	go func() { defer c.wg.Done(); f() }()
}

func advertiseHost(configured, bind string) (string, error) {
	if configured != "" {
		if net.ParseIP(configured) == nil {
			return "", fmt.Errorf("cluster: advertise %q is not an IP address", configured)
		}
		return configured, nil
	}
	host, _, err := net.SplitHostPort(bind)
	if err != nil {
		return "", fmt.Errorf("cluster: address %q: %w", bind, err)
	}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		return host, nil
	}
	if host != "" && net.ParseIP(host) == nil {
		return "", fmt.Errorf("cluster: bind host %q must be an IP address", host)
	}
	ip, err := privateIP()
	if err != nil {
		return "", fmt.Errorf("cluster: no advertise address: the bind addresses are unspecified and %w; set cluster.advertise", err)
	}
	return ip, nil
}

// withHost gives a listen address with no host, or an unspecified one
// (":25", "0.0.0.0:25"), the advertised host, so that other nodes and
// operators see an address they can reach.
func withHost(listen, host string) string {
	h, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort(host, port)
	}
	return listen
}

// privateIP is the first private unicast IPv4 address of an up interface.
func privateIP() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsPrivate() {
			return n.IP.String(), nil
		}
	}
	return "", errors.New("this machine has no private IPv4 address")
}

func (c *Cluster) gossipConfig(advertise string) (*memberlist.Config, error) {
	host, portStr, err := net.SplitHostPort(c.cfg.GossipBind)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip address %q: %w", c.cfg.GossipBind, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("cluster: gossip address %q: bad port", c.cfg.GossipBind)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.cfg.Name
	mc.BindAddr = host
	mc.BindPort = port
	mc.AdvertiseAddr = advertise
	mc.AdvertisePort = port
	mc.SecretKey = c.cfg.SecretKey
	mc.Delegate = gossipDelegate{c}
	mc.Events = gossipEvents{c}
	// memberlist's [INFO] lines are routine (joins are logged by
	// observe); they go to debug.
	mc.Logger = log.New(levelWriter{log: c.log, component: "gossip", info: slog.LevelDebug}, "", 0)
	if c.cfg.ConfigureGossip != nil {
		c.cfg.ConfigureGossip(mc)
	}
	return mc, nil
}

// gossipDelegate gives memberlist this node's metadata; the other
// memberlist.Delegate hooks are unused (state travels through Raft).
type gossipDelegate struct{ c *Cluster }

func (d gossipDelegate) NodeMeta(limit int) []byte {
	m := d.c.cfg.Meta
	m.HasState = d.c.node.HasState()
	m.Leaving = d.c.leaving.Load()
	b, _ := json.Marshal(m)
	if len(b) > limit {
		// Keep what the cluster needs to work: the Raft address.
		b, _ = json.Marshal(Meta{Raft: m.Raft, HasState: m.HasState})
	}
	return b
}
func (gossipDelegate) NotifyMsg([]byte)                           {}
func (gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (gossipDelegate) LocalState(join bool) []byte                { return nil }
func (gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

// gossipEvents records memberlist's view of each node. memberlist calls it
// synchronously, so it only updates the map and signals.
type gossipEvents struct{ c *Cluster }

// memberlist does not fill in Node.State in these callbacks (its own
// record of the state is a separate field), so the state comes from the
// callback: a join is alive, a leave is dead, or left when the node's last
// metadata said it was leaving (Shutdown gossips that first).
func (e gossipEvents) NotifyJoin(n *memberlist.Node) { e.c.observe(n, memberlist.StateAlive) }
func (e gossipEvents) NotifyLeave(n *memberlist.Node) {
	e.c.observe(n, memberlist.StateDead)
}
func (e gossipEvents) NotifyUpdate(n *memberlist.Node) { e.c.observe(n, memberlist.StateAlive) }

func (c *Cluster) observe(n *memberlist.Node, state memberlist.NodeStateType) {
	var meta Meta
	metaOK := json.Unmarshal(n.Meta, &meta) == nil && meta.Raft != ""
	if state == memberlist.StateDead && meta.Leaving {
		state = memberlist.StateLeft
	}
	c.mu.Lock()
	m := c.members[n.Name]
	if m == nil {
		m = &memberState{name: n.Name}
		c.members[n.Name] = m
	}
	if m.state != state || m.since.IsZero() {
		m.since = time.Now()
		if n.Name != c.cfg.Name {
			c.log.Info("gossip member "+gossipStateName(state), "event", "gossip_member",
				"member", n.Name, "state", gossipStateName(state), "addr", n.Address())
		}
	}
	m.state = state
	m.addr = n.Address()
	m.meta, m.metaOK = meta, metaOK
	c.mu.Unlock()
	for _, ch := range []chan struct{}{c.wakeBootstrap, c.wakeLeader} {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// joinLoop joins the seeds, retrying with backoff until one answers.
func (c *Cluster) joinLoop() {
	if len(c.cfg.Join) == 0 {
		return
	}
	wait := joinRetryMin
	for {
		n, err := c.ml.Join(c.cfg.Join)
		if n > 0 {
			c.log.Info("joined the cluster", "event", "cluster_join", "contacted", n)
			return
		}
		c.log.Warn("cannot join the cluster yet; retrying", "event", "cluster_join",
			"seeds", c.cfg.Join, "error", fmt.Sprint(err), "retry_in", wait.String())
		if !c.sleep(wait) {
			return
		}
		wait = min(2*wait, joinRetryMax)
	}
}

// sleep waits d with ±20% jitter; false when the cluster is shutting down.
func (c *Cluster) sleep(d time.Duration) bool {
	d = d*4/5 + rand.N(d*2/5+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// bootstrapLoop bootstraps the cluster when this node has no Raft state
// and gossip shows BootstrapExpect fresh nodes (see Cluster).
func (c *Cluster) bootstrapLoop() {
	tick := time.NewTicker(reconcileInterval)
	defer tick.Stop()
	var lastWaitLog time.Time
	for !c.node.HasState() {
		servers, others := c.bootstrapSet()
		if others {
			c.log.Info("a cluster exists; waiting for its leader to add this node", "event", "cluster_bootstrap")
			return
		}
		if len(servers) >= c.cfg.BootstrapExpect {
			err := c.node.BootstrapCluster(servers)
			if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
				c.log.Error("bootstrap failed", "event", "cluster_bootstrap", "error", err.Error())
			} else {
				ids := make([]string, len(servers))
				for i, s := range servers {
					ids[i] = string(s.ID)
				}
				c.log.Info("bootstrapped the cluster", "event", "cluster_bootstrap", "voters", ids)
				// Tell the others at once that a cluster exists.
				_ = c.ml.UpdateNode(time.Second)
			}
			return
		}
		if time.Since(lastWaitLog) >= bootstrapWaitLog {
			lastWaitLog = time.Now()
			seen := make([]string, len(servers))
			for i, s := range servers {
				seen[i] = string(s.ID)
			}
			c.log.Warn("waiting for cluster.bootstrap_expect nodes to see each other before forming the cluster; until then greylisting fails open",
				"event", "cluster_bootstrap", "bootstrap_expect", c.cfg.BootstrapExpect, "seen", seen)
		}
		select {
		case <-c.ctx.Done():
			return
		case <-c.wakeBootstrap:
		case <-tick.C:
		}
	}
}

// bootstrapSet returns the alive members as Raft servers, sorted, and
// whether any other member already has Raft state.
func (c *Cluster) bootstrapSet() (servers []raft.Server, othersHaveState bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if m.state != memberlist.StateAlive || !m.metaOK {
			continue
		}
		if m.name != c.cfg.Name && m.meta.HasState {
			othersHaveState = true
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.name), Address: raft.ServerAddress(m.meta.Raft)})
	}
	slices.SortFunc(servers, func(a, b raft.Server) int { return cmp.Compare(a.ID, b.ID) })
	return servers, othersHaveState
}

// leaderLoop reconciles voters with gossip and issues expiry while this
// node is the leader.
func (c *Cluster) leaderLoop() {
	tick := time.NewTicker(reconcileInterval)
	defer tick.Stop()
	var leaderSince, lastExpire time.Time
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.wakeLeader:
		case <-tick.C:
		}
		if c.node.State() != raft.Leader {
			leaderSince = time.Time{}
			continue
		}
		now := time.Now()
		if leaderSince.IsZero() {
			leaderSince, lastExpire = now, now
		}
		c.reconcile(leaderSince, now)
		if now.Sub(lastExpire) >= c.cfg.ExpireInterval {
			lastExpire = now
			c.expire(now)
		}
	}
}

func (c *Cluster) reconcile(leaderSince, now time.Time) {
	servers, err := c.node.Configuration()
	if err != nil {
		c.log.Warn("reconcile", "event", "cluster_reconcile", "error", err.Error())
		return
	}
	inConfig := make(map[string]string, len(servers))
	for _, s := range servers {
		inConfig[string(s.ID)] = string(s.Address)
	}
	type change struct {
		id, addr string
		deadFor  time.Duration
	}
	var add, remove []change
	c.mu.Lock()
	for _, m := range c.members {
		if m.state == memberlist.StateAlive && m.metaOK && m.name != c.cfg.Name {
			if addr, ok := inConfig[m.name]; !ok || addr != m.meta.Raft {
				add = append(add, change{id: m.name, addr: m.meta.Raft})
			}
		}
	}
	for _, s := range servers {
		id := string(s.ID)
		if id == c.cfg.Name {
			continue
		}
		since := leaderSince
		if m := c.members[id]; m != nil {
			if m.state == memberlist.StateAlive || m.state == memberlist.StateSuspect {
				continue
			}
			since = later(m.since, leaderSince)
		}
		if d := now.Sub(since); d >= c.cfg.RemoveDeadAfter {
			remove = append(remove, change{id: id, deadFor: d})
		}
	}
	c.mu.Unlock()
	for _, a := range add {
		// Gossip only proves the member has the gossip key. A voter
		// that Raft cannot reach still counts towards the quorum, so a
		// member joins the voters only once it shows, on its Raft
		// address, a cluster certificate issued for its own name.
		if err := c.node.mux.probe(a.addr, a.id); err != nil {
			if c.warnOnce(a.id) {
				c.log.Warn("not adding a member as voter: its Raft address does not prove it is that node of this cluster",
					"event", "cluster_voter", "member", a.id, "raft", a.addr, "error", err.Error())
			}
			metricProbeFailures.Inc()
			continue
		}
		if err := c.node.AddVoter(a.id, a.addr); err != nil {
			c.log.Warn("adding voter failed", "event", "cluster_voter", "member", a.id, "error", err.Error())
			continue
		}
		metricVoterChanges.WithLabelValues("added").Inc()
		c.log.Info("added voter", "event", "cluster_voter", "action", "added", "member", a.id, "raft", a.addr)
	}
	for _, r := range remove {
		if err := c.node.RemoveServer(r.id); err != nil {
			c.log.Warn("removing dead voter failed", "event", "cluster_voter", "member", r.id, "error", err.Error())
			continue
		}
		metricVoterChanges.WithLabelValues("removed_dead").Inc()
		c.log.Warn("removed voter dead in gossip", "event", "cluster_voter", "action", "removed_dead",
			"member", r.id, "dead_for", r.deadFor.Round(time.Second).String())
	}
}

// warnOnce tells whether to log a repeated problem with member now: at
// most once a minute per member, since reconcile runs every second.
func (c *Cluster) warnOnce(member string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.warned == nil {
		c.warned = map[string]time.Time{}
	}
	if time.Since(c.warned[member]) < time.Minute {
		return false
	}
	c.warned[member] = time.Now()
	return true
}

// later is the later of the time a member was last seen change state and
// the start of this leadership: a leader does not count time it did not
// observe.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (c *Cluster) expire(now time.Time) {
	ctx, cancel := context.WithTimeout(c.ctx, DefaultWriteTimeout)
	defer cancel()
	resp, err := c.node.Apply(ctx, EncodeExpire(now))
	if err != nil {
		metricExpiries.WithLabelValues("error").Inc()
		c.log.Warn("expiry failed", "event", "cluster_expire", "error", err.Error())
		return
	}
	metricExpiries.WithLabelValues("ok").Inc()
	if r, ok := resp.(ExpireResult); ok && r.Total() > 0 {
		args := []any{"event", "cluster_expire"}
		for _, what := range slices.Sorted(maps.Keys(r)) {
			args = append(args, what, r[what])
		}
		c.log.Info("expired replicated state", args...)
	}
}

// Remove takes a node out of the Raft configuration by hand. A node alive
// in gossip is refused: the leader would add it straight back, so it must
// be stopped first.
func (c *Cluster) Remove(name string) error {
	if name == c.cfg.Name {
		return errors.New("cluster: a node cannot remove itself; run remove on another node")
	}
	c.mu.Lock()
	m := c.members[name]
	alive := m != nil && (m.state == memberlist.StateAlive || m.state == memberlist.StateSuspect)
	c.mu.Unlock()
	if alive {
		return fmt.Errorf("cluster: node %q is alive in gossip; stop it before removing it", name)
	}
	servers, err := c.node.Configuration()
	if err != nil {
		return err
	}
	found := false
	for _, s := range servers {
		found = found || string(s.ID) == name
	}
	if !found {
		return fmt.Errorf("%w: %q", ErrNotMember, name)
	}
	ctx, cancel := context.WithTimeout(c.ctx, membershipTimeout)
	defer cancel()
	if err := c.node.RemoveServerViaLeader(ctx, name); err != nil {
		return err
	}
	metricVoterChanges.WithLabelValues("removed_by_operator").Inc()
	c.log.Warn("removed voter by operator request", "event", "cluster_voter", "action", "removed_by_operator", "member", name)
	return nil
}

// ErrNotMember: the node named is not in the Raft configuration.
var ErrNotMember = errors.New("cluster: no such voter")

// Node is the Raft node, for stores built on it.
func (c *Cluster) Node() *Node { return c.node }

// GossipAddr is the advertised gossip address.
func (c *Cluster) GossipAddr() string { return c.ml.LocalNode().Address() }

// Shutdown leaves gossip (so the others see "left", not a failure) and
// stops Raft. A node that leaves stays a voter: it rejoins on restart,
// and the leader only removes it after RemoveDeadAfter.
func (c *Cluster) Shutdown() error {
	c.shutdownOnce.Do(func() {
		c.cancel()
		c.wg.Wait()
		if err := c.node.TransferLeadership(); err != nil {
			c.log.Warn("leadership transfer before shutdown failed; the others will elect a leader after the election timeout",
				"event", "cluster_stop", "error", err.Error())
		}
		c.leaving.Store(true)
		_ = c.ml.UpdateNode(leaveTimeout / 2)
		err := c.ml.Leave(leaveTimeout)
		c.shutdownErr = errors.Join(err, c.ml.Shutdown(), c.node.Shutdown())
	})
	return c.shutdownErr
}
