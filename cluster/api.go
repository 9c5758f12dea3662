package cluster

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// Member is one node as this node sees it, for `mxgate cluster members`.
type Member struct {
	Name string `json:"name"`
	// Gossip is the member's gossip address; empty for a voter that gossip
	// has never shown this node.
	Gossip string `json:"gossip,omitempty"`
	// Status is the gossip state: alive, suspect, dead, left, or unknown.
	Status string `json:"status"`
	// Since is when this node saw the member enter Status.
	Since   time.Time `json:"since,omitzero"`
	Version string    `json:"version,omitempty"`
	SMTP    string    `json:"smtp,omitempty"`
	Relay   string    `json:"relay,omitempty"`
	HTTP    string    `json:"http,omitempty"`
	Raft    string    `json:"raft,omitempty"`
	// Voter: the member is in the Raft configuration.
	Voter  bool `json:"voter"`
	Leader bool `json:"leader"`
}

// Members lists every node known to gossip or in the Raft configuration,
// sorted by name.
func (c *Cluster) Members() []Member {
	servers, _ := c.node.Configuration()
	_, leaderID := c.node.raft.LeaderWithID()
	byName := map[string]*Member{}
	c.mu.Lock()
	for _, m := range c.members {
		byName[m.name] = &Member{
			Name: m.name, Gossip: m.addr, Status: gossipStateName(m.state), Since: m.since,
			Version: m.meta.Version, SMTP: m.meta.SMTP, Relay: m.meta.Relay, HTTP: m.meta.HTTP, Raft: m.meta.Raft,
		}
	}
	c.mu.Unlock()
	for _, s := range servers {
		m := byName[string(s.ID)]
		if m == nil {
			m = &Member{Name: string(s.ID), Status: "unknown", Raft: string(s.Address)}
			byName[m.Name] = m
		}
		m.Voter = s.Suffrage == raft.Voter
	}
	out := make([]Member, 0, len(byName))
	for _, m := range byName {
		m.Leader = m.Name == string(leaderID)
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Status is this node's Raft state, for `mxgate cluster status`.
type Status struct {
	Node         string `json:"node"`
	State        string `json:"state"`
	Leader       string `json:"leader"`
	LeaderAddr   string `json:"leader_addr"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LastLogIndex uint64 `json:"last_log_index"`
	// LastContact is how long ago this follower heard from the leader:
	// "0s" on the leader, "never" before the first contact.
	LastContact       string `json:"last_contact"`
	LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	Voters            int    `json:"voters"`
	FSMSizeBytes      int64  `json:"fsm_size_bytes"`
	GossipAlive       int    `json:"gossip_alive"`
	BootstrapExpect   int    `json:"bootstrap_expect"`
}

// Status reports the node's Raft state.
func (c *Cluster) Status() Status {
	st := c.node.raft.Stats()
	num := func(k string) uint64 { v, _ := strconv.ParseUint(st[k], 10, 64); return v }
	s := Status{
		Node:              c.cfg.Name,
		State:             stateName(c.node.State()),
		Term:              num("term"),
		CommitIndex:       num("commit_index"),
		AppliedIndex:      num("applied_index"),
		LastLogIndex:      num("last_log_index"),
		LastSnapshotIndex: num("last_snapshot_index"),
		LastContact:       st["last_contact"],
		FSMSizeBytes:      c.node.fsm.Size(),
		BootstrapExpect:   c.cfg.BootstrapExpect,
	}
	if s.State == "leader" {
		s.LastContact = "0s"
	}
	s.Leader, s.LeaderAddr = c.node.Leader()
	if servers, err := c.node.Configuration(); err == nil {
		for _, sv := range servers {
			if sv.Suffrage == raft.Voter {
				s.Voters++
			}
		}
	}
	c.mu.Lock()
	for _, m := range c.members {
		if m.state == memberlist.StateAlive {
			s.GossipAlive++
		}
	}
	c.mu.Unlock()
	return s
}

// metricsLoop refreshes the Raft and gossip gauges every second.
func (c *Cluster) metricsLoop() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		c.updateMetrics()
		c.pruneMembers(time.Now())
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pruneMembers forgets members that have been dead or left for
// RemoveDeadAfter and are not voters, so that the list does not grow with
// every node that ever passed through.
func (c *Cluster) pruneMembers(now time.Time) {
	servers, err := c.node.Configuration()
	if err != nil {
		return
	}
	voter := make(map[string]bool, len(servers))
	for _, s := range servers {
		voter[string(s.ID)] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, m := range c.members {
		gone := m.state == memberlist.StateDead || m.state == memberlist.StateLeft
		if gone && !voter[name] && now.Sub(m.since) > c.cfg.RemoveDeadAfter {
			delete(c.members, name)
		}
	}
}

func (c *Cluster) updateMetrics() {
	s := c.Status()
	for _, rs := range raftStates {
		v := 0.0
		if stateName(rs) == s.State {
			v = 1
		}
		metricRaftState.WithLabelValues(stateName(rs)).Set(v)
	}
	hasLeader := 0.0
	if s.Leader != "" {
		hasLeader = 1
	}
	metricHasLeader.Set(hasLeader)
	metricCommitIndex.Set(float64(s.CommitIndex))
	metricAppliedIndex.Set(float64(s.AppliedIndex))
	metricVoters.Set(float64(s.Voters))
	metricFSMSize.Set(float64(s.FSMSizeBytes))
	metricIgnoredCommands.Set(float64(c.node.fsm.IgnoredCommands()))
	if d, err := time.ParseDuration(s.LastContact); err == nil {
		metricLastContact.Set(d.Seconds())
	}
	counts := map[memberlist.NodeStateType]int{}
	c.mu.Lock()
	for _, m := range c.members {
		counts[m.state]++
	}
	c.mu.Unlock()
	for _, st := range []memberlist.NodeStateType{memberlist.StateAlive, memberlist.StateSuspect, memberlist.StateDead, memberlist.StateLeft} {
		metricGossipMembers.WithLabelValues(gossipStateName(st)).Set(float64(counts[st]))
	}
}
