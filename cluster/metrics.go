package cluster

import (
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Label values are bounded: the four Raft states and the four gossip
// states.
var (
	metricRaftState = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mxgate_raft_state",
		Help: "1 for this node's current Raft state (follower, candidate, leader, shutdown), 0 for the others.",
	}, []string{"state"})
	metricHasLeader = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "mxgate_raft_has_leader",
		Help: "1 when this node knows a Raft leader (the cluster has quorum), else 0.",
	})
	metricLeaderChanges = promauto.NewCounter(prometheus.CounterOpts{
		Name: "mxgate_raft_leader_changes_total",
		Help: "Leader changes seen by this node (including to no leader).",
	})
	metricApplyDuration = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "mxgate_raft_apply_duration_seconds",
		Help:    "Time for a write to be committed through the leader, forwarding and retries included.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5},
	})
	metricApplyErrors = promauto.NewCounter(prometheus.CounterOpts{
		Name: "mxgate_raft_apply_errors_total",
		Help: "Writes that could not be committed (no quorum within the deadline, rejected, shut down).",
	})
	metricCommitIndex = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "mxgate_raft_commit_index",
		Help: "The Raft commit index as known to this node.",
	})
	metricAppliedIndex = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "mxgate_raft_applied_index",
		Help: "The last Raft index applied to this node's state.",
	})
	metricLastContact = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "mxgate_raft_last_contact_seconds",
		Help: "Seconds since a follower last heard from the leader (0 on the leader).",
	})
	metricVoters = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "mxgate_raft_voters",
		Help: "Voters in the Raft configuration.",
	})
	metricFSMSize = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "mxgate_raft_fsm_size_bytes",
		Help: "Size of the replicated state's bbolt file on this node.",
	})
	metricSnapshotDuration = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "mxgate_raft_snapshot_duration_seconds",
		Help:    "Time to write a snapshot of the replicated state.",
		Buckets: prometheus.ExponentialBuckets(.001, 4, 10),
	})
	metricIgnoredCommands = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "mxgate_raft_ignored_commands",
		Help: "Log entries of unknown ignorable types this node skipped since it started: a newer mxgate version writes to the cluster.",
	})
	metricTLSHandshakeErrors = promauto.NewCounter(prometheus.CounterOpts{
		Name: "mxgate_cluster_tls_handshake_errors_total",
		Help: "Connections to the node port refused because their TLS handshake failed (no or wrong cluster certificate).",
	})
	metricProbeFailures = promauto.NewCounter(prometheus.CounterOpts{
		Name: "mxgate_cluster_voter_probe_failures_total",
		Help: "Gossip members the leader did not make voters because their Raft address did not answer with a cluster certificate for their name.",
	})
	metricGossipMembers = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mxgate_gossip_members",
		Help: "Cluster members known to gossip, by state (alive, suspect, dead, left).",
	}, []string{"state"})
	metricVoterChanges = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_cluster_voter_changes_total",
		Help: "Voter changes: added and removed_dead by this node as leader; removed_by_operator when an operator's request reached this node.",
	}, []string{"action"})
	metricExpiries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "mxgate_cluster_expiries_total",
		Help: "Expiry commands issued by this node as leader, by result (ok, error).",
	}, []string{"result"})
)

var raftStates = []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown}

func init() {
	for _, s := range raftStates {
		metricRaftState.WithLabelValues(stateName(s))
	}
	for _, s := range []memberlist.NodeStateType{memberlist.StateAlive, memberlist.StateSuspect, memberlist.StateDead, memberlist.StateLeft} {
		metricGossipMembers.WithLabelValues(gossipStateName(s))
	}
	for _, a := range []string{"added", "removed_dead", "removed_by_operator"} {
		metricVoterChanges.WithLabelValues(a)
	}
	for _, r := range []string{"ok", "error"} {
		metricExpiries.WithLabelValues(r)
	}
}

func stateName(s raft.RaftState) string {
	switch s {
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	case raft.Leader:
		return "leader"
	default:
		return "shutdown"
	}
}

func gossipStateName(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateDead:
		return "dead"
	default:
		return "left"
	}
}
