package e2e

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/mxgate/mxgate/internal/smtptest"
)

// TestAlertRulesUseExposedMetrics: every mxgate_ metric the shipped
// Prometheus rules use is exposed by a freshly started node, so no alert
// silently watches a name that does not exist.
func TestAlertRulesUseExposedMetrics(t *testing.T) {
	data, err := os.ReadFile("../deployments/prometheus/mxgate-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("e2e: rules file: %v", err)
	}
	be := smtptest.Start(t)
	n := startNode(t, nodeOptions{backends: []string{be.Addr()}})
	exposed, err := n.metrics()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for series := range exposed {
		name, _, _ := strings.Cut(series, "{")
		names = append(names, name)
	}
	metricRE := regexp.MustCompile(`mxgate_[a-z_]+`)
	count := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			count++
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("e2e: rule %+v lacks alert, expr, severity or summary", r)
			}
			for _, m := range metricRE.FindAllString(r.Expr, -1) {
				if !slices.Contains(names, m) {
					t.Errorf("e2e: alert %s uses %s, which the node does not expose", r.Alert, m)
				}
			}
		}
	}
	if count < 5 {
		t.Fatalf("e2e: only %d rules read", count)
	}
}
