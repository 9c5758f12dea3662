package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

const rulesFile = "../deployments/prometheus/mxgate-rules.yml"

// TestPrometheusScrapesAndAlerts runs a real Prometheus (Debian's
// prometheus package) against a one-node cluster with the shipped rules:
// promtool accepts the rules, Prometheus reads mxgate's counters, every
// rule evaluates without error, and an alert fires for what it watches.
func TestPrometheusScrapesAndAlerts(t *testing.T) {
	if out, err := exec.Command("promtool", "check", "rules", rulesFile).CombinedOutput(); err != nil {
		t.Fatalf("e2e: promtool check rules: %v\n%s", err, out)
	}

	tlsDir := filepath.Join(t.TempDir(), "tls")
	tlsInit(t, tlsDir, "solo")
	be := smtptest.Start(t)
	co := &clusterOptions{gossip: gossipAddr(t), raft: freeAddr(t), bootstrapExpect: 1, tlsDir: tlsDir}
	n := startNode(t, nodeOptions{name: "solo", backends: []string{be.Addr()}, greylist: clusterGreylist(time.Minute), cluster: co})
	wait.For(t, 20*time.Second, "the one-node cluster to elect itself", func() (bool, string) {
		s, err := n.clusterStatus()
		if err != nil {
			return false, err.Error()
		}
		return s.State == "leader", fmt.Sprintf("%+v", s)
	})

	prom := startPrometheus(t, n.http)

	// A counter Prometheus reads from the node: one greylisted RCPT.
	c, rep := rcptFrom(t, "127.0.0.1", n.inbound, "prom@example.org", "user@e2e.test")
	c.close()
	if !rep.is("451 4.7.1") {
		t.Fatalf("e2e: first RCPT: %q, want 451 4.7.1", rep)
	}
	wait.For(t, 30*time.Second, "Prometheus to read the greylist counter", func() (bool, string) {
		v, err := prom.queryValue(`mxgate_greylist_decisions_total{result="new"}`)
		return err == nil && v == 1, fmt.Sprintf("value %v, error %v", v, err)
	})
	wait.For(t, 30*time.Second, "Prometheus to see the node as a leader with quorum", func() (bool, string) {
		v, err := prom.queryValue(`mxgate_raft_has_leader * on(instance) mxgate_raft_state{state="leader"}`)
		return err == nil && v == 1, fmt.Sprintf("value %v, error %v", v, err)
	})

	// Connections to the Raft port without a cluster certificate: the
	// MxgateClusterForeignConnections alert fires.
	for range 30 {
		conn, err := net.DialTimeout("tcp", co.raft, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write([]byte("F not TLS\r\n"))
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.Copy(io.Discard, conn) // until the node hangs up
		conn.Close()
	}
	n.waitMetric(10*time.Second, 30, "mxgate_cluster_tls_handshake_errors_total")
	wait.For(t, 60*time.Second, "MxgateClusterForeignConnections to fire", func() (bool, string) {
		alerts, err := prom.alerts()
		if err != nil {
			return false, err.Error()
		}
		for _, a := range alerts {
			if a.Labels["alertname"] == "MxgateClusterForeignConnections" && a.State == "firing" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("alerts: %+v", alerts)
	})

	// Every rule evaluates without error against real series.
	rules, err := prom.ruleHealth()
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) < 5 {
		t.Fatalf("e2e: Prometheus loaded %d rules", len(rules))
	}
	for name, health := range rules {
		if health != "ok" {
			t.Errorf("e2e: rule %s health %q", name, health)
		}
	}
}

type prometheus struct {
	t    *testing.T
	addr string
}

// startPrometheus runs prometheus scraping target every second with the
// shipped rules, its storage in a temp dir, on a loopback port.
func startPrometheus(t *testing.T, target string) *prometheus {
	t.Helper()
	dir := t.TempDir()
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: mxgate
    static_configs: [{targets: [%q]}]
`, rules, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("prometheus", "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("e2e: start prometheus: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("e2e: prometheus log:\n%s", b)
		}
	})
	p := &prometheus{t: t, addr: addr}
	wait.For(t, 30*time.Second, "prometheus ready", func() (bool, string) {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return p
}

func (p *prometheus) get(path string, params url.Values, out any) error {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + p.addr + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("%s: %w: %s", path, err, body)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s", path, env.Error)
	}
	return json.Unmarshal(env.Data, out)
}

// queryValue runs an instant query that must return one sample.
func (p *prometheus) queryValue(q string) (float64, error) {
	var data struct {
		Result []struct {
			Value [2]any `json:"value"`
		} `json:"result"`
	}
	if err := p.get("/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
		return 0, err
	}
	if len(data.Result) != 1 {
		return 0, fmt.Errorf("%d samples", len(data.Result))
	}
	s, _ := data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}

type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func (p *prometheus) alerts() ([]promAlert, error) {
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	err := p.get("/api/v1/alerts", nil, &data)
	return data.Alerts, err
}

// ruleHealth maps each loaded rule's name to its evaluation health.
func (p *prometheus) ruleHealth() (map[string]string, error) {
	var data struct {
		Groups []struct {
			Rules []struct {
				Name   string `json:"name"`
				Health string `json:"health"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := p.get("/api/v1/rules", nil, &data); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			out[r.Name] = r.Health
		}
	}
	return out, nil
}
