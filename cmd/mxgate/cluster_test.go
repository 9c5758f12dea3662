package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mxgate/mxgate/cluster"
	"github.com/mxgate/mxgate/gateway"
)

// clusterFiles makes the cluster TLS files and gossip key with tls-init
// and returns the directory.
func clusterFiles(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tls")
	var out, errb bytes.Buffer
	if rc := runClusterTLSInit([]string{"-dir", dir, "-nodes", "mx1"}, &out, &errb); rc != 0 {
		t.Fatalf("tls-init exited %d: %s", rc, errb.String())
	}
	return dir
}

func clusterConfig(dir, section string) string {
	return fmt.Sprintf(`node: {name: mx1, data_dir: /tmp/x}
hostname: mx1.example.net
domains: [example.com]
backends: ["127.0.0.1:2526"]
cluster:
%s
  secret_file: %s/gossip.key
  tls: {ca: %s/ca.pem, cert: %s/mx1.pem, key: %s/mx1-key.pem}
`, section, dir, dir, dir, dir)
}

func TestClusterConfig(t *testing.T) {
	dir := clusterFiles(t)
	cfg, err := ParseConfig("c.yaml", []byte(clusterConfig(dir, `  gossip: "10.0.0.1:7946"
  raft: "10.0.0.1:7947"
  join: ["10.0.0.2:7946", "mx3.example.net:7946"]
  bootstrap_expect: 3
  remove_dead_after: 2d`)))
	if err != nil {
		t.Fatalf("good cluster config refused:\n%v", err)
	}
	c := cfg.Cluster
	if !cfg.clustered || c.BootstrapExpect != 3 || len(c.secretKey) != 32 || c.tls == nil || c.RemoveDeadAfter.D() != 48*time.Hour {
		t.Errorf("parsed %+v", c)
	}

	// A lone node: the section with defaults is a one-node cluster.
	cfg, err = ParseConfig("c.yaml", []byte(clusterConfig(dir, `  gossip: "127.0.0.1:7946"`)))
	if err != nil {
		t.Fatalf("one-node cluster refused:\n%v", err)
	}
	if cfg.Cluster.BootstrapExpect != 1 || cfg.Cluster.Raft != ":7947" {
		t.Errorf("one-node defaults: %+v", cfg.Cluster)
	}

	// No cluster section: standalone.
	cfg, err = ParseConfig("c.yaml", []byte(goodConfig))
	if err != nil || cfg.clustered {
		t.Errorf("no section: clustered=%v err=%v", cfg != nil && cfg.clustered, err)
	}
}

func TestClusterConfigErrors(t *testing.T) {
	dir := clusterFiles(t)
	loose := filepath.Join(t.TempDir(), "loose.key")
	if err := os.WriteFile(loose, []byte("c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0Cg==\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(t.TempDir(), "short.key")
	if err := os.WriteFile(short, []byte("c2hvcnQ=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, section, want string }{
		{"join without expect", `  join: ["10.0.0.2:7946"]`, "cluster.bootstrap_expect: required with cluster.join"},
		{"expect without join", `  bootstrap_expect: 3`, "cluster.join: required with bootstrap_expect 3"},
		{"expect one with join", "  join: [\"10.0.0.2:7946\"]\n  bootstrap_expect: 1", "cluster.bootstrap_expect: 1 with cluster.join"},
		{"bad join", "  join: [nohostport]\n  bootstrap_expect: 3", `cluster.join[0]: "nohostport" is not host:port`},
		{"same ports", `  gossip: ":7000"` + "\n" + `  raft: ":7000"`, "cluster.raft: \":7000\" is also cluster.gossip"},
		{"port zero", `  gossip: "127.0.0.1:0"`, "cluster.gossip: \"127.0.0.1:0\": the port must be fixed"},
		{"bad advertise", `  advertise: mx1.example.net`, "cluster.advertise: \"mx1.example.net\" is not an IP address"},
		{"short dead timeout", `  remove_dead_after: 10ms`, "cluster.remove_dead_after"},
		{"unknown key", `  bootstrap: 3`, "cluster.bootstrap: unknown key"},
		{"loose key file", "  secret_file: " + loose, "lets other users read the gossip key"},
		{"short key", "  secret_file: " + short, "the key is 5 bytes; want 16, 24 or 32"},
		{"missing cert", "  tls: {ca: " + dir + "/ca.pem, key: " + dir + "/mx1-key.pem}", "cluster.tls.cert: required"},
		{"key does not match", "  tls: {ca: " + dir + "/ca.pem, cert: " + dir + "/mx1.pem, key: " + dir + "/ca-key.pem}", "cluster.tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Later keys override the defaults of clusterConfig.
			text := clusterConfig(dir, tc.section)
			if strings.Contains(tc.section, "secret_file") || strings.Contains(tc.section, "tls:") {
				text = strings.Replace(text, "cluster:\n"+tc.section+"\n", "cluster:\n", 1)
				lines := strings.Split(text, "\n")
				var keep []string
				for _, l := range lines {
					if (strings.HasPrefix(l, "  secret_file:") && strings.Contains(tc.section, "secret_file")) ||
						(strings.HasPrefix(l, "  tls:") && strings.Contains(tc.section, "tls:")) {
						continue
					}
					keep = append(keep, l)
				}
				text = strings.Join(keep, "\n") + tc.section + "\n"
			}
			_, err := ParseConfig("c.yaml", []byte(text))
			if err == nil {
				t.Fatalf("accepted:\n%s", text)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "c.yaml:") {
				t.Errorf("error\n%v\ndoes not contain %q with the file and line", err, tc.want)
			}
		})
	}
}

func TestRaftTuning(t *testing.T) {
	env := map[string]string{"MXGATE_RAFT_SNAPSHOT_THRESHOLD": "64", "MXGATE_RAFT_SNAPSHOT_INTERVAL": "500ms"}
	tune, err := raftTuning(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	rc := raft.DefaultConfig()
	tune(rc)
	if rc.SnapshotThreshold != 64 || rc.TrailingLogs != 64 || rc.SnapshotInterval != 500*time.Millisecond {
		t.Errorf("tuned: threshold %d trailing %d interval %v", rc.SnapshotThreshold, rc.TrailingLogs, rc.SnapshotInterval)
	}
	tune, err = raftTuning(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	rc, def := raft.DefaultConfig(), raft.DefaultConfig()
	tune(rc)
	if rc.SnapshotThreshold != def.SnapshotThreshold || rc.SnapshotInterval != def.SnapshotInterval {
		t.Error("no environment changed the defaults")
	}
	for k, v := range map[string]string{"MXGATE_RAFT_SNAPSHOT_THRESHOLD": "0", "MXGATE_RAFT_SNAPSHOT_INTERVAL": "soon"} {
		if _, err := raftTuning(func(key string) string {
			if key == k {
				return v
			}
			return ""
		}); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: error %v does not name the variable", k, v, err)
		}
	}
}

// clusterAPI is the node's mux with the cluster API registered on it.
func clusterAPI(cl *cluster.Cluster, adminToken string, logger *slog.Logger) http.Handler {
	m := gateway.NewAdminMux(adminToken, nil)
	registerClusterAPI(m, cl, logger)
	return m
}

func TestClusterAPIStandaloneAndAdmin(t *testing.T) {
	h := clusterAPI(nil, "", discardLogger())
	for _, path := range []string{"/api/v1/cluster/members", "/api/v1/cluster/status"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var e apiError
		if rec.Code != http.StatusNotFound || json.Unmarshal(rec.Body.Bytes(), &e) != nil || !strings.Contains(e.Error, "not in a cluster") {
			t.Errorf("%s on a standalone node: %d %s", path, rec.Code, rec.Body)
		}
	}

	// remove: loopback only without a token...
	req := httptest.NewRequest(http.MethodPost, "/api/v1/cluster/remove?node=mx2", nil)
	req.RemoteAddr = "192.0.2.7:4000"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("remove from a remote address without a token: %d", rec.Code)
	}
	req.RemoteAddr = "127.0.0.1:4000"
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound {
		t.Errorf("remove from loopback on a standalone node: %d %s", rec.Code, rec.Body)
	}

	// ...and the token from anywhere, once one is configured.
	const token = "0123456789abcdef0123"
	h = clusterAPI(nil, token, discardLogger())
	for _, tc := range []struct {
		remote, auth string
		want         int
	}{
		{"127.0.0.1:1", "", http.StatusForbidden},
		{"192.0.2.7:1", "Bearer wrong", http.StatusForbidden},
		{"192.0.2.7:1", "Bearer " + token, http.StatusNotFound},
	} {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/cluster/remove?node=mx2", nil)
		req.RemoteAddr = tc.remote
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("remote %s auth %q: %d, want %d", tc.remote, tc.auth, rec.Code, tc.want)
		}
	}
}

func TestDialable(t *testing.T) {
	for in, want := range map[string]string{":8025": "127.0.0.1:8025", "0.0.0.0:8025": "127.0.0.1:8025",
		"[::]:8025": "127.0.0.1:8025", "10.0.0.1:8025": "10.0.0.1:8025"} {
		if got := dialable(in); got != want {
			t.Errorf("dialable(%q) = %q, want %q", in, got, want)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
