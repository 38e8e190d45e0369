// Package assets_test checks the observability assets: every alert and
// dashboard query parses as PromQL and names only metrics the operator
// exports, and the Argo CD health scripts are the ones shipped in argocd-cm.
package assets_test

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/sinks"
	"github.com/log-capturer/log-capturer/capture/workers"
	"github.com/log-capturer/log-capturer/test/envtestutil"
)

func root(t *testing.T) string {
	t.Helper()
	r, err := envtestutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// exported lists the metric names the operator exports, with the series
// names of histograms.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	factory := sinks.NewFactory(sinks.Options{AllowLoopbackEgress: true, Stdout: io.Discard, FileRoot: t.TempDir()})
	// A pipeline applied (not started) is enough for every series to be
	// listed; its pod cache and log source are never used.
	engine, err := workers.NewManager(workers.Options{Source: struct{ capture.LogSource }{},
		Pods: struct{ workers.PodCache }{}, Sinks: factory.New})
	if err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(engine, factory)
	if err := engine.Apply(context.Background(), types.NamespacedName{Namespace: "ns", Name: "p"}, capture.PipelineConfig{
		Namespace: "ns", Name: "p", RotationInterval: time.Minute, MaxStreams: 1,
		Sinks: []capture.SinkConfig{{Name: "s", Kind: capture.SinkStdout, Stdout: &capture.StdoutConfig{}}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Remove(context.Background(), types.NamespacedName{Namespace: "ns", Name: "p"}) })
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		out[mf.GetName()] = true
		if mf.GetType().String() == "HISTOGRAM" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				out[mf.GetName()+suffix] = true
			}
		}
	}
	return out
}

// metricNames parses expr and returns the metric names it selects.
func metricNames(t *testing.T, expr string) []string {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		t.Fatalf("%q does not parse: %v", expr, err)
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

func checkExpr(t *testing.T, where, expr string, known map[string]bool) {
	t.Helper()
	names := metricNames(t, expr)
	if len(names) == 0 {
		t.Errorf("%s: %q selects no metric", where, expr)
	}
	for _, n := range names {
		if !known[n] {
			t.Errorf("%s: %q names %s, which the operator does not export", where, expr, n)
		}
	}
}

func TestPrometheusRules(t *testing.T) {
	known := exported(t)
	b, err := os.ReadFile(filepath.Join(root(t), "config", "prometheus", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `json:"alert"`
					Expr  string `json:"expr"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &rule); err != nil {
		t.Fatal(err)
	}
	// Prometheus's own series of each scrape target.
	known["up"] = true
	var alerts []string
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			checkExpr(t, r.Alert, r.Expr, known)
			alerts = append(alerts, r.Alert)
		}
	}
	for _, want := range []string{"LogCapturerGoroutineLeak", "LogCapturerFDLeak", "LogCapturerNoLogsDelivered",
		"LogCapturerDataDropped", "LogCapturerSinkUnavailable", "LogCapturerStreamPoolSaturated",
		"LogCapturerAgentDown", "LogCapturerCaptureLagging"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alert %s is missing", want)
		}
	}
}

func TestGrafanaDashboard(t *testing.T) {
	known := exported(t)
	b, err := os.ReadFile(filepath.Join(root(t), "config", "grafana", "log-capturer-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title         string `json:"title"`
		UID           string `json:"uid"`
		SchemaVersion int    `json:"schemaVersion"`
		Panels        []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			GridPos *struct{ W, H int }
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || dash.SchemaVersion == 0 || len(dash.Panels) < 10 {
		t.Fatalf("not a complete dashboard: title %q uid %q schema %d, %d panels", dash.Title, dash.UID, dash.SchemaVersion, len(dash.Panels))
	}
	seen := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "" || p.GridPos == nil || len(p.Targets) == 0 {
			t.Errorf("panel %q lacks a type, position or query", p.Title)
		}
		for _, tg := range p.Targets {
			expr := strings.NewReplacer("$pipeline", ".*", "$node", ".*").Replace(tg.Expr)
			checkExpr(t, p.Title, expr, known)
			for _, n := range metricNames(t, expr) {
				seen[n] = true
			}
		}
	}
	for _, want := range []string{"log_capturer_active_streams", "log_capturer_waiting_streams",
		"log_capturer_container_stream_rotations_total", "log_capturer_goroutines", "log_capturer_open_fds",
		"log_capturer_logs_processed_total", "log_capturer_bytes_processed_total", "log_capturer_sink_failed_batches_total",
		"log_capturer_sink_retries_total", "log_capturer_sink_dropped_lines_total", "log_capturer_sink_queue_bytes",
		"log_capturer_component_health", "log_capturer_unread_bytes", "log_capturer_file_containers"} {
		if !seen[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}

func TestArgoCDConfigMapEmbedsTheScripts(t *testing.T) {
	dir := filepath.Join(root(t), "config", "argocd")
	b, err := os.ReadFile(filepath.Join(dir, "argocd-cm-patch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	for key, file := range map[string]string{
		"resource.customizations.health.logs.capturer.dev_LogPipeline": "health.lua",
		"resource.customizations.health.logs.capturer.dev_SinkTarget":  "health.lua",
	} {
		want, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data[key] != string(want) {
			t.Errorf("%s in argocd-cm-patch.yaml differs from %s", key, file)
		}
	}
}
