package chart_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/log-capturer/log-capturer/internal/operator"
	"github.com/log-capturer/log-capturer/test/envtestutil"
)

var (
	k8sClient client.Client
	ctx       context.Context
	suiteT    *testing.T
)

// TestDryRun runs the chart's server-side dry run against the envtest API
// server, with the project's CRDs and the Prometheus Operator's.
func TestDryRun(t *testing.T) {
	suiteT = t
	RegisterFailHandler(Fail)
	RunSpecs(t, "Helm chart dry-run suite")
}

var _ = BeforeSuite(func() {
	ctx = context.Background()
	env, err := envtestutil.NewEnvironment()
	Expect(err).NotTo(HaveOccurred())
	crds := os.Getenv("PROMETHEUS_CRDS")
	if crds == "" {
		crds = filepath.Join(repo(suiteT), "bin", "prometheus-crds")
	}
	for _, f := range []string{"monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml"} {
		_, err := os.Stat(filepath.Join(crds, f))
		Expect(err).NotTo(HaveOccurred(), "run 'make prometheus-crds' (make test does)")
		env.CRDInstallOptions.Paths = append(env.CRDInstallOptions.Paths, filepath.Join(crds, f))
	}
	var cfg *rest.Config
	cfg, err = env.Start()
	DeferCleanup(func() { _ = env.Stop() })
	Expect(err).NotTo(HaveOccurred())
	scheme, err := operator.NewScheme()
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
})

// dryRun dry-runs objs after creating the namespaces they go into besides
// their own Namespaces.
func dryRun(objs []*unstructured.Unstructured, namespaces ...string) map[string]int {
	for _, ns := range namespaces {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("v1")
		u.SetKind("Namespace")
		u.SetName(ns)
		Expect(client.IgnoreAlreadyExists(k8sClient.Create(ctx, u))).To(Succeed())
	}
	kinds, err := envtestutil.DryRunApply(ctx, k8sClient, "chart-test", objs)
	Expect(err).NotTo(HaveOccurred())
	return kinds
}

var _ = Describe("the chart's objects", func() {
	It("pass a server-side dry run with the default values", func() {
		kinds := dryRun(render(suiteT), releaseNamespace)
		Expect(kinds).To(HaveKeyWithValue("CustomResourceDefinition", 3))
		Expect(kinds).To(HaveKeyWithValue("DaemonSet", 1))
		Expect(kinds).To(HaveKeyWithValue("Deployment", 1))
		GinkgoWriter.Printf("default values: %v\n", kinds)
	})

	It("pass a server-side dry run with every value set, monitoring objects included", func() {
		kinds := dryRun(render(suiteT, "--values", "test/chart/testdata/full-values.yaml"), releaseNamespace, "monitoring")
		Expect(kinds).To(HaveKeyWithValue("ServiceMonitor", 2))
		Expect(kinds).To(HaveKeyWithValue("PrometheusRule", 1))
		Expect(kinds).To(HaveKeyWithValue("CapturePolicy", 1))
		Expect(kinds).To(HaveKeyWithValue("ConfigMap", 1))
		GinkgoWriter.Printf("full values: %v\n", kinds)
	})

	It("leaves a CapturePolicy's spec to the API server, which refuses a wrong one with its message", func() {
		objs := render(suiteT, "--set", "policy.capturePolicies[0].name=wrong",
			"--set", "policy.capturePolicies[0].spec.namespaceSelector.matchLabels.team=a",
			"--set", "policy.capturePolicies[0].spec.sinkTypes={Splunk}")
		var policy *unstructured.Unstructured
		for _, u := range objs {
			if u.GetKind() == "CapturePolicy" {
				policy = u
			}
		}
		Expect(policy).NotTo(BeNil())
		err := k8sClient.Apply(ctx, client.ApplyConfigurationFromUnstructured(policy), client.FieldOwner("chart-test"), client.ForceOwnership, client.DryRunAll)
		Expect(err).To(MatchError(ContainSubstring(`spec.sinkTypes[0]: Unsupported value: "Splunk"`)))
	})
})
