package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mxgate/mxgate/cluster"
	"github.com/mxgate/mxgate/gateway"
)

// startCluster starts gossip and Raft for a node whose configuration has a
// cluster section.
func startCluster(cfg *Config, logger *slog.Logger) (*cluster.Cluster, error) {
	tune, err := raftTuning(os.Getenv)
	if err != nil {
		return nil, err
	}
	cl, err := cluster.Start(cfg.clusterConfig(tune, logger))
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	return cl, nil
}

// raftTuning reads the environment variables that change when Raft
// compacts its log: MXGATE_RAFT_SNAPSHOT_THRESHOLD (entries since the last
// snapshot, also the entries kept after it; Raft's default 8192) and
// MXGATE_RAFT_SNAPSHOT_INTERVAL (how often the threshold is checked;
// default 2m). They are environment variables, not configuration keys:
// the defaults suit production, and tests and benchmarks need small
// values.
func raftTuning(getenv func(string) string) (func(*raft.Config), error) {
	var threshold uint64
	var interval time.Duration
	if v := getenv("MXGATE_RAFT_SNAPSHOT_THRESHOLD"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("MXGATE_RAFT_SNAPSHOT_THRESHOLD=%q: want a whole number of log entries, at least 1", v)
		}
		threshold = n
	}
	if v := getenv("MXGATE_RAFT_SNAPSHOT_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Millisecond {
			return nil, fmt.Errorf("MXGATE_RAFT_SNAPSHOT_INTERVAL=%q: want a duration of at least 10ms, such as 1s", v)
		}
		interval = d
	}
	return func(rc *raft.Config) {
		if threshold > 0 {
			rc.SnapshotThreshold = threshold
			rc.TrailingLogs = threshold
		}
		if interval > 0 {
			rc.SnapshotInterval = interval
		}
	}, nil
}

// registerClusterAPI adds /api/v1/cluster/ to the node's mux: members and
// status for everyone who can reach the HTTP listener (like /metrics),
// remove behind the mux's admin check. cl is nil on a node without a
// cluster section.
func registerClusterAPI(m *gateway.AdminMux, cl *cluster.Cluster, logger *slog.Logger) {
	notClustered := func(w http.ResponseWriter) bool {
		if cl == nil {
			gateway.WriteJSON(w, http.StatusNotFound, apiError{Error: "this node is not in a cluster: its configuration has no cluster section"})
			return true
		}
		return false
	}
	m.HandleAPI("GET /api/v1/cluster/members", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !notClustered(w) {
			gateway.WriteJSON(w, http.StatusOK, map[string]any{"members": cl.Members()})
		}
	}), gateway.Anyone)
	m.HandleAPI("GET /api/v1/cluster/status", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !notClustered(w) {
			gateway.WriteJSON(w, http.StatusOK, cl.Status())
		}
	}), gateway.Anyone)
	m.HandleAPI("POST /api/v1/cluster/remove", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if notClustered(w) {
			return
		}
		node := r.URL.Query().Get("node")
		if node == "" {
			gateway.WriteJSON(w, http.StatusBadRequest, apiError{Error: "missing node parameter"})
			return
		}
		err := cl.Remove(node)
		switch {
		case err == nil:
			logger.Warn("node removed from the cluster by the admin API", "event", "admin", "member", node, "remote", r.RemoteAddr)
			gateway.WriteJSON(w, http.StatusOK, map[string]string{"removed": node})
		case errors.Is(err, cluster.ErrNotMember):
			gateway.WriteJSON(w, http.StatusNotFound, apiError{Error: err.Error()})
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, cluster.ErrNoLeader):
			gateway.WriteJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error()})
		default:
			gateway.WriteJSON(w, http.StatusConflict, apiError{Error: err.Error()})
		}
	}), gateway.AdminOnly("removing a node"))
}

// apiError is the API's error body, as the CLI reads it.
type apiError = gateway.APIError

const clusterUsage = `Usage:
  mxgate cluster members [-config FILE | -http URL]   the nodes gossip and Raft know, with their state
  mxgate cluster status  [-config FILE | -http URL]   this node's Raft state, leader, term, indexes, last contact
  mxgate cluster remove  [-config FILE | -http URL] NODE
                                                      remove a stopped node from the Raft voters
  mxgate cluster tls-init -dir DIR -nodes mx1,mx2,mx3 make the cluster CA, node certificates and gossip key
`

func cmdCluster(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, clusterUsage)
		return 2
	}
	sub, rest := args[0], args[1:]
	if sub == "tls-init" {
		return runClusterTLSInit(rest, stdout, stderr)
	}
	switch sub {
	case "members", "status", "remove":
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, clusterUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "mxgate cluster: unknown command %q\n\n%s", sub, clusterUsage)
		return 2
	}
	fs := flag.NewFlagSet("cluster "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := apiFlags(fs)
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	want := 0
	if sub == "remove" {
		want = 1
	}
	if fs.NArg() != want {
		fmt.Fprint(stderr, clusterUsage)
		return 2
	}
	api, err := target.client()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	switch sub {
	case "members":
		err = printMembers(api, stdout)
	case "status":
		err = printStatus(api, stdout)
	case "remove":
		node := fs.Arg(0)
		err = api.do(http.MethodPost, "/api/v1/cluster/remove?node="+url.QueryEscape(node), nil)
		if err == nil {
			fmt.Fprintf(stdout, "removed %s from the Raft voters\n", node)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "mxgate cluster %s: %v\n", sub, err)
		return 1
	}
	return 0
}

// dialable turns a listen address into one a client can dial: an empty or
// unspecified host becomes loopback.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if a, err := netip.ParseAddr(host); host == "" || (err == nil && a.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

type apiClient struct {
	base, token string
}

// apiTarget is how an admin subcommand finds the node: -http, or the
// listen.http and admin.token_file of -config.
type apiTarget struct {
	config, http *string
}

// apiFlags adds -config and -http to fs.
func apiFlags(fs *flag.FlagSet) apiTarget {
	return apiTarget{
		config: fs.String("config", "/etc/mxgate/mxgate.yaml", "the node's configuration: its listen.http and admin.token_file are used"),
		http:   fs.String("http", "", "the node's HTTP API, e.g. http://127.0.0.1:8025 (instead of -config)"),
	}
}

// client is the API client of the node the flags name.
func (t apiTarget) client() (apiClient, error) {
	api := apiClient{base: *t.http}
	if api.base != "" {
		return api, nil
	}
	cfg, err := LoadConfig(*t.config)
	if err != nil {
		return api, err
	}
	api.base = "http://" + dialable(cfg.Listen.HTTP)
	api.token = cfg.Admin.token
	return api, nil
}

func (a apiClient) do(method, path string, out any) error {
	return a.doBody(method, path, nil, out)
}

// doBody sends body (JSON) when not nil.
func (a apiClient) doBody(method, path string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(a.base, "/")+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", req.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e apiError
		if json.Unmarshal(respBody, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("%s: %s: %s", req.URL, resp.Status, bytes.TrimSpace(respBody))
	}
	if out != nil {
		if err := json.Unmarshal(respBody, out); err != nil {
			return fmt.Errorf("%s: %w", req.URL, err)
		}
	}
	return nil
}

func printMembers(api apiClient, w io.Writer) error {
	var resp struct {
		Members []cluster.Member `json:"members"`
	}
	if err := api.do(http.MethodGet, "/api/v1/cluster/members", &resp); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATUS\tRAFT\tGOSSIP\tRAFT ADDR\tSMTP\tHTTP\tVERSION")
	for _, m := range resp.Members {
		role := "-"
		switch {
		case m.Leader:
			role = "leader"
		case m.Voter:
			role = "voter"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Status, role,
			orDash(m.Gossip), orDash(m.Raft), orDash(m.SMTP), orDash(m.HTTP), orDash(m.Version))
	}
	return tw.Flush()
}

func printStatus(api apiClient, w io.Writer) error {
	var s cluster.Status
	if err := api.do(http.MethodGet, "/api/v1/cluster/status", &s); err != nil {
		return err
	}
	leader := s.Leader
	if leader == "" {
		leader = "none (no quorum)"
	} else {
		leader += " (" + s.LeaderAddr + ")"
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, row := range [][2]string{
		{"node", s.Node},
		{"state", s.State},
		{"leader", leader},
		{"term", fmt.Sprint(s.Term)},
		{"commit index", fmt.Sprint(s.CommitIndex)},
		{"applied index", fmt.Sprint(s.AppliedIndex)},
		{"last log index", fmt.Sprint(s.LastLogIndex)},
		{"last snapshot index", fmt.Sprint(s.LastSnapshotIndex)},
		{"last contact", s.LastContact},
		{"voters", fmt.Sprint(s.Voters)},
		{"gossip alive", fmt.Sprint(s.GossipAlive)},
		{"state size", fmt.Sprintf("%d bytes", s.FSMSizeBytes)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
