package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mxgate/mxgate/cluster"
)

// ClusterSection makes the node a member of a cluster (README, "The
// cluster"). Without a cluster section the node runs alone and keeps its
// greylist state in data_dir/greylist.json.
type ClusterSection struct {
	Gossip          string            `yaml:"gossip"`
	Raft            string            `yaml:"raft"`
	Advertise       string            `yaml:"advertise"`
	Join            []string          `yaml:"join"`
	BootstrapExpect int               `yaml:"bootstrap_expect"`
	SecretFile      string            `yaml:"secret_file"`
	RemoveDeadAfter Duration          `yaml:"remove_dead_after"`
	TLS             ClusterTLSSection `yaml:"tls"`

	secretKey []byte
	tls       *cluster.TLS
}

// ClusterTLSSection names the PEM files of the node-to-node TLS (mxgate
// cluster tls-init makes them).
type ClusterTLSSection struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

func (c *ClusterSection) setDefaults() {
	*c = ClusterSection{
		Gossip:          cluster.DefaultGossipBind,
		Raft:            cluster.DefaultRaftBind,
		RemoveDeadAfter: Duration(cluster.DefaultRemoveDeadAfter),
	}
}

// validate also reads the gossip key and the TLS files, and makes a
// missing bootstrap_expect 1 (a one-node cluster).
func (c *ClusterSection) validate(failed failedKeys) ConfigErrors {
	var errs ConfigErrors
	for key, addr := range map[string]string{"cluster.gossip": c.Gossip, "cluster.raft": c.Raft} {
		if err := checkListenAddr(addr); err != nil {
			errs.add(key, "%v", err)
		} else if _, port, _ := net.SplitHostPort(addr); port == "0" {
			errs.add(key, "%q: the port must be fixed, other nodes are configured with it", addr)
		}
	}
	if failed.decoded("cluster.gossip", "cluster.raft") && c.Gossip == c.Raft {
		errs.add("cluster.raft", "%q is also cluster.gossip; they need different ports", c.Raft)
	}
	if c.Advertise != "" {
		if _, err := netip.ParseAddr(c.Advertise); err != nil {
			errs.add("cluster.advertise", "%q is not an IP address", c.Advertise)
		}
	}
	for i, j := range c.Join {
		if err := checkHostPort(j); err != nil {
			errs.add(fmt.Sprintf("cluster.join[%d]", i), "%v (a node's cluster.gossip address)", err)
		}
	}
	switch {
	case c.BootstrapExpect < 0:
		errs.add("cluster.bootstrap_expect", "%d: want the number of nodes that form the cluster", c.BootstrapExpect)
	case c.BootstrapExpect == 0 && len(c.Join) > 0 && failed.decoded("cluster.join"):
		errs.add("cluster.bootstrap_expect", "required with cluster.join: the number of nodes that form the cluster at first (e.g. 3); without it every node would start a cluster of its own")
	case c.BootstrapExpect == 0:
		c.BootstrapExpect = 1
	}
	if c.BootstrapExpect == 1 && len(c.Join) > 0 && failed.decoded("cluster.join") {
		errs.add("cluster.bootstrap_expect", "1 with cluster.join: this node would start a cluster of its own before hearing from the others; give the number of nodes of the cluster (e.g. 3), or drop join for a one-node cluster")
	}
	if c.BootstrapExpect > 1 && len(c.Join) == 0 && failed.decoded("cluster.join") {
		errs.add("cluster.join", "required with bootstrap_expect %d: the gossip addresses of the other nodes", c.BootstrapExpect)
	}
	if c.SecretFile == "" {
		errs.add("cluster.secret_file", "required: the gossip encryption key (mxgate cluster tls-init writes one)")
	} else if key, err := cluster.LoadSecretKey(c.SecretFile); err != nil {
		errs.add("cluster.secret_file", "%v", err)
	} else {
		c.secretKey = key
	}
	files := cluster.TLSFiles{CA: c.TLS.CA, Cert: c.TLS.Cert, Key: c.TLS.Key}
	missing := false
	for key, v := range map[string]string{"cluster.tls.ca": files.CA, "cluster.tls.cert": files.Cert, "cluster.tls.key": files.Key} {
		if v == "" {
			missing = true
			errs.add(key, "required: Raft and write forwarding between nodes run over TLS with the cluster CA (mxgate cluster tls-init makes the files)")
		}
	}
	if !missing && failed.decoded("cluster.tls.ca", "cluster.tls.cert", "cluster.tls.key") {
		t, err := cluster.LoadTLS(files)
		if err != nil {
			// LoadTLS names the key and file ("cluster.tls.cert PATH: why").
			key, why, ok := strings.Cut(err.Error(), " ")
			if !ok || !strings.HasPrefix(key, "cluster.tls.") {
				key, why = "cluster.tls", err.Error()
			}
			errs.add(key, "%s", why)
		} else {
			c.tls = t
		}
	}
	checkDuration(&errs, "cluster.remove_dead_after", c.RemoveDeadAfter, time.Second, 365*oneDay,
		" (how long a voter may be dead before the leader removes it)")
	return errs
}

// clusterConfig is gossip's and Raft's configuration: this section with
// the node's name, state directory and addresses; tune adjusts Raft.
func (c *Config) clusterConfig(tune func(*raft.Config), logger *slog.Logger) cluster.Config {
	s := c.Cluster
	return cluster.Config{
		Name:            c.Node.Name,
		Dir:             filepath.Join(c.Node.DataDir, "cluster"),
		GossipBind:      s.Gossip,
		RaftBind:        s.Raft,
		Advertise:       s.Advertise,
		Join:            s.Join,
		BootstrapExpect: s.BootstrapExpect,
		SecretKey:       s.secretKey,
		TLS:             s.tls,
		RemoveDeadAfter: s.RemoveDeadAfter.D(),
		Meta:            cluster.Meta{Version: version, SMTP: c.Listen.Inbound, Relay: c.Listen.Relay, HTTP: c.Listen.HTTP},
		Logger:          logger,
		ConfigureRaft:   tune,
	}
}
