// Package chart_test checks the Helm chart in charts/log-capturer with the
// Helm that `make helm` builds: it lints, its schema refuses wrong values
// with Helm's message, with the default values it renders the objects of
// dist/install.yaml (and, in api mode, of dist/install-api.yaml), and what it
// renders passes a server-side dry run against the envtest API server.
package chart_test

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/log-capturer/log-capturer/test/envtestutil"
)

// releaseNamespace is where the tests install the release.
const releaseNamespace = "log-capturer-system"

// helmLabels and helmAnnotations are what the chart adds to the objects of
// config/: Helm's own labels and the CRDs' resource policy.
var (
	helmLabels      = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"}
	helmAnnotations = []string{"helm.sh/resource-policy"}
)

// repo is the repository's root.
func repo(t testing.TB) string {
	t.Helper()
	root, err := envtestutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// helmBinary is $HELM (make test sets it) or the one make helm builds.
func helmBinary(t testing.TB) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	matches, _ := filepath.Glob(filepath.Join(repo(t), "bin", "helm-v*"))
	if len(matches) == 0 {
		t.Fatal("no Helm: run 'make helm' (make test does), or set $HELM")
	}
	return matches[len(matches)-1]
}

// helm runs Helm on the chart and returns what it printed on stdout.
func helm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBinary(t), args...)
	cmd.Dir = repo(t)
	// Helm keeps nothing of the developer's here.
	tmp := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+tmp, "HELM_CONFIG_HOME="+tmp, "HELM_DATA_HOME="+tmp)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// render is helm template of the chart with the extra arguments.
func render(t testing.TB, args ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := helm(t, append([]string{"template", "log-capturer", "charts/log-capturer", "--namespace", releaseNamespace}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := envtestutil.DecodeObjects(strings.NewReader(out))
	if err != nil {
		t.Fatalf("helm template printed what is not YAML objects: %v", err)
	}
	return objs
}

// readObjects reads a file of YAML objects.
func readObjects(t testing.TB, path string) []*unstructured.Unstructured {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v (make build-installer writes dist/; make test runs it)", err)
	}
	defer f.Close()
	objs, err := envtestutil.DecodeObjects(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return objs
}

// key names an object.
func key(o *unstructured.Unstructured) string {
	return o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
}

// withoutHelm is the object without what the chart adds to config/'s.
func withoutHelm(o *unstructured.Unstructured) *unstructured.Unstructured {
	c := o.DeepCopy()
	if l := c.GetLabels(); l != nil {
		for _, k := range helmLabels {
			delete(l, k)
		}
		c.SetLabels(l)
	}
	if a := c.GetAnnotations(); a != nil {
		for _, k := range helmAnnotations {
			delete(a, k)
		}
		if len(a) == 0 {
			a = nil
		}
		c.SetAnnotations(a)
	}
	return c
}

// image is the operator image dist/ was written with, as chart values.
func image(t testing.TB, objs []*unstructured.Unstructured) []string {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		img, _, _ := unstructured.NestedString(cs[0].(map[string]any), "image")
		i := strings.LastIndex(img, ":")
		if i < 0 {
			t.Fatalf("image %q has no tag", img)
		}
		return []string{"--set", "image.repository=" + img[:i], "--set", "image.tag=" + img[i+1:]}
	}
	t.Fatal("no Deployment")
	return nil
}

// sameObjects fails unless the chart's objects are the installer's, but for
// the release's namespace (helm install --create-namespace makes it).
func sameObjects(t *testing.T, chart, installer []*unstructured.Unstructured) {
	t.Helper()
	want := map[string]*unstructured.Unstructured{}
	for _, o := range installer {
		if o.GetKind() == "Namespace" && o.GetName() == releaseNamespace {
			continue
		}
		want[key(o)] = o
	}
	got := map[string]*unstructured.Unstructured{}
	for _, o := range chart {
		if _, dup := got[key(o)]; dup {
			t.Errorf("the chart renders %s twice", key(o))
		}
		got[key(o)] = withoutHelm(o)
		if o.GetLabels()["app.kubernetes.io/managed-by"] != "Helm" {
			t.Errorf("%s lacks Helm's labels", key(o))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[k]
		if !ok {
			t.Errorf("the chart does not render %s", k)
			continue
		}
		if !reflect.DeepEqual(g.Object, want[k].Object) {
			t.Errorf("%s differs from the installer's:\n%s", k, diff(want[k].Object, g.Object, ""))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("the chart renders %s, which the installer has not", k)
		}
	}
	t.Logf("%d objects, the same as the installer's (its namespace %s aside)", len(got), releaseNamespace)
}

// diff lists the paths where two decoded objects differ.
func diff(want, got any, path string) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("  %s: %v, want %v\n", path, got, want)
		}
		var b strings.Builder
		for _, k := range slices.Sorted(maps.Keys(union(w, g))) {
			b.WriteString(diff(w[k], g[k], path+"."+k))
		}
		return b.String()
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("  %s: %v, want %v\n", path, got, want)
		}
		var b strings.Builder
		for i := range w {
			b.WriteString(diff(w[i], g[i], fmt.Sprintf("%s[%d]", path, i)))
		}
		return b.String()
	default:
		if !reflect.DeepEqual(want, got) {
			return fmt.Sprintf("  %s: %v, want %v\n", path, got, want)
		}
		return ""
	}
}

// union is a map with the keys of both.
func union(a, b map[string]any) map[string]any {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

func TestDefaultValuesRenderTheInstaller(t *testing.T) {
	installer := readObjects(t, filepath.Join(repo(t), "dist", "install.yaml"))
	sameObjects(t, render(t, image(t, installer)...), installer)
}

func TestAPIModeRendersTheAPIInstaller(t *testing.T) {
	installer := readObjects(t, filepath.Join(repo(t), "dist", "install-api.yaml"))
	sameObjects(t, render(t, append(image(t, installer), "--set", "capture.mode=api")...), installer)
}

func TestLint(t *testing.T) {
	for _, values := range []string{"", "test/chart/testdata/full-values.yaml"} {
		args := []string{"lint", "--strict", "charts/log-capturer", "--namespace", releaseNamespace}
		if values != "" {
			args = append(args, "--values", values)
		}
		out, err := helm(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("helm lint %s: %s", values, strings.TrimSpace(out))
	}
}

// TestFullValues checks that every value reaches the objects it is for.
func TestFullValues(t *testing.T) {
	objs := render(t, "--values", "test/chart/testdata/full-values.yaml")
	byKey := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		byKey[key(o)] = o
	}
	container := func(k string) map[string]any {
		o, ok := byKey[k]
		if !ok {
			t.Fatalf("no %s", k)
		}
		cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		return cs[0].(map[string]any)
	}
	args := func(c map[string]any) []string {
		a, _, _ := unstructured.NestedStringSlice(c, "args")
		return a
	}
	op := container("Deployment/" + releaseNamespace + "/log-capturer")
	for _, want := range []string{"--capture=agent", "--memory-budget=384Mi", "--metrics-cert-dir=/etc/log-capturer/metrics",
		"--default-sink-types=Loki,OTLP", "--allow-insecure-skip-verify", "--allow-raw-stdout", "--max-streams-per-namespace=200",
		"--min-rotation-interval=30s", "--file-quota-per-namespace=512Mi", "--file-quota-total=unlimited", "--health-sample-period=30s"} {
		if !slices.Contains(args(op), want) {
			t.Errorf("operator args %v lack %s", args(op), want)
		}
	}
	if op["image"] != "registry.example.com/log-capturer:1.2.3" || op["imagePullPolicy"] != "Always" {
		t.Errorf("operator image %v %v", op["image"], op["imagePullPolicy"])
	}
	ag := container("DaemonSet/log-capturer-agents/log-capturer-agent")
	for _, want := range []string{"--memory-budget=64Mi", "--metrics-cert-dir=/etc/log-capturer/metrics", "--report-period=20s"} {
		if !slices.Contains(args(ag), want) {
			t.Errorf("agent args %v lack %s", args(ag), want)
		}
	}
	ds := byKey["DaemonSet/log-capturer-agents/log-capturer-agent"]
	sel, _, _ := unstructured.NestedStringMap(ds.Object, "spec", "template", "spec", "nodeSelector")
	if sel["logs.example.com/agent"] != "true" {
		t.Errorf("agent nodeSelector %v", sel)
	}
	prio, _, _ := unstructured.NestedString(ds.Object, "spec", "template", "spec", "priorityClassName")
	if prio != "system-cluster-critical" {
		t.Errorf("agent priorityClassName %q", prio)
	}
	for _, k := range []string{"ServiceMonitor/" + releaseNamespace + "/log-capturer", "ServiceMonitor/" + releaseNamespace + "/log-capturer-agents",
		"PrometheusRule/" + releaseNamespace + "/log-capturer", "ConfigMap/monitoring/log-capturer-dashboard", "CapturePolicy//platform"} {
		if _, ok := byKey[k]; !ok {
			t.Errorf("no %s", k)
		}
	}
	// The alerts' own templates reach Prometheus as they are written.
	rule, _, _ := unstructured.NestedSlice(byKey["PrometheusRule/"+releaseNamespace+"/log-capturer"].Object, "spec", "groups")
	if !strings.Contains(fmt.Sprint(rule), "{{ $labels.pipeline }}") {
		t.Errorf("the alerts lost their {{ $labels }} templates: %v", rule)
	}
	dash, _, _ := unstructured.NestedString(byKey["ConfigMap/monitoring/log-capturer-dashboard"].Object, "data", "log-capturer-dashboard.json")
	want, err := os.ReadFile(filepath.Join(repo(t), "config", "grafana", "log-capturer-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(dash) != strings.TrimSpace(string(want)) {
		t.Errorf("the dashboard ConfigMap is not config/grafana's dashboard")
	}
}

// TestSchemaRefusesWrongValues: Helm refuses them before rendering anything,
// saying which value and why.
func TestSchemaRefusesWrongValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		want string
	}{
		{"unknown mode", []string{"capture.mode=files"}, "at '/capture/mode': value must be one of 'auto', 'agent', 'api'"},
		{"misspelt key", []string{"captur.mode=api"}, "additional properties 'captur' not allowed"},
		{"misspelt nested key", []string{"agent.nodeSelecter.a=b"}, "additional properties 'nodeSelecter' not allowed"},
		{"memory budget not bytes", []string{"agent.memoryBudget=lots"}, "at '/agent/memoryBudget'"},
		{"operator budget not a quantity", []string{"operator.memoryBudget=1 GB"}, "at '/operator/memoryBudget'"},
		{"GOMEMLIMIT unit", []string{"agent.goMemLimit=230Mi"}, "at '/agent/goMemLimit'"},
		{"pull policy", []string{"image.pullPolicy=Sometimes"}, "at '/image/pullPolicy'"},
		{"replicas negative", []string{"operator.replicas=-1"}, "at '/operator/replicas'"},
		{"replicas a string", []string{"operator.replicas=one"}, "at '/operator/replicas'"},
		{"sink type", []string{"policy.defaultSinkTypes={Loki,Splunk}"}, "at '/policy/defaultSinkTypes/1'"},
		{"rotation interval", []string{"policy.minRotationInterval=soon"}, "at '/policy/minRotationInterval'"},
		{"toleration operator", []string{"agent.tolerations[0].operator=Always"}, "at '/agent/tolerations/0/operator'"},
		{"policy without spec", []string{"policy.capturePolicies[0].name=x"}, "missing property 'spec'"},
		{"policy name", []string{"policy.capturePolicies[0].name=Not_A_Name", "policy.capturePolicies[0].spec.namespaceSelector.matchLabels.a=b"}, "at '/policy/capturePolicies/0/name'"},
		{"metrics insecure a string", []string{"metrics.insecure=maybe"}, "at '/metrics/insecure'"},
		{"service monitor key", []string{"metrics.serviceMonitor.enable=true"}, "additional properties 'enable' not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"template", "log-capturer", "charts/log-capturer", "--namespace", releaseNamespace}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			out, err := helm(t, args...)
			if err == nil {
				t.Fatalf("accepted %v; rendered %d bytes", tc.set, len(out))
			}
			if !strings.Contains(err.Error(), "values don't meet the specifications of the schema") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("refused %v, but without %q: %v", tc.set, tc.want, err)
			}
		})
	}
}

// TestAgentsNamespaceIsNotTheRelease: the release's namespace becomes the
// operator's, which must not be the agents'.
func TestAgentsNamespaceIsNotTheRelease(t *testing.T) {
	_, err := helm(t, "template", "log-capturer", "charts/log-capturer", "--namespace", "log-capturer-agents")
	if err == nil || !strings.Contains(err.Error(), "log-capturer-agents is the node agents' own") {
		t.Fatalf("installing into the agents' namespace: %v", err)
	}
}
