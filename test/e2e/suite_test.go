//go:build e2e

// Package e2e_test proves the product on a real single-node cluster that
// `make e2e` builds from source and brings up (hack/e2e): the operator is
// installed from dist/install-api.yaml, workloads write numbered lines through a
// real kubelet and containerd, and a Loki receiver in this process counts
// every line.
package e2e_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/log-capturer/log-capturer/internal/operator"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

var (
	ctx       context.Context
	k8sClient client.Client
	loki      *lokireceiver.Receiver
	lokiURL   string
	kubectl   string
	kubecfg   string
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Real node e2e suite")
}

var _ = BeforeSuite(func() {
	ctx = context.Background()
	kubecfg, kubectl = os.Getenv("E2E_KUBECONFIG"), os.Getenv("E2E_KUBECTL")
	Expect(kubecfg).NotTo(BeEmpty(), "run through make e2e")
	cfg, err := clientcmd.BuildConfigFromFlags("", kubecfg)
	Expect(err).NotTo(HaveOccurred())
	scheme, err := operator.NewScheme()
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	// Pods reach the receiver through the node's address.
	loki = lokireceiver.New()
	l, err := net.Listen("tcp", "0.0.0.0:0")
	Expect(err).NotTo(HaveOccurred())
	srv := &http.Server{Handler: loki, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	DeferCleanup(func() {
		loki.Close()
		_ = srv.Close()
	})
	lokiURL = fmt.Sprintf("http://%s:%d", os.Getenv("E2E_NODE_IP"), l.Addr().(*net.TCPAddr).Port)
})

// On a failure, what CI keeps of the run says why: the pipeline's status,
// the line accounting and the operator's log.
var _ = AfterEach(func() {
	if !CurrentSpecReport().Failed() || kubectl == "" {
		return
	}
	for _, args := range [][]string{
		{"get", "lp,st", "-A", "-o", "yaml"},
		{"get", "pods", "-A", "-o", "wide"},
		{"-n", "log-capturer-system", "logs", "deployment/log-capturer", "--tail=300"},
		{"-n", "log-capturer-agents", "get", "daemonset,pods", "-o", "wide"},
		{"-n", "log-capturer-agents", "logs", "daemonset/log-capturer-agent", "--tail=200"},
	} {
		c := exec.Command(kubectl, append([]string{"--kubeconfig", kubecfg}, args...)...)
		out, _ := c.CombinedOutput()
		fmt.Fprintf(GinkgoWriter, "\n== kubectl %s\n%s", strings.Join(args, " "), out)
	}
	if loki != nil {
		fmt.Fprintf(GinkgoWriter, "\n== line accounting problems\n%s\n", strings.Join(problems(received(), 1000, nil), "\n"))
	}
})

// CI keeps the end of a run's output; run.sh prints this file after the
// cluster is down, so that why a spec failed is among the last lines.
var _ = ReportAfterSuite("failures for the end of the output", func(r Report) {
	path := os.Getenv("E2E_FAILURES")
	if path == "" {
		return
	}
	var b strings.Builder
	for _, s := range r.SpecReports {
		if !s.Failed() {
			continue
		}
		msg := s.Failure.Message
		if len(msg) > 2000 {
			msg = msg[:2000] + " [cut]"
		}
		fmt.Fprintf(&b, "FAILED %s (%s)\n%s\n", s.FullText(), s.Failure.Location, msg)
	}
	if b.Len() > 0 {
		_ = os.WriteFile(path, []byte(b.String()), 0o600)
	}
})

// run runs kubectl against the e2e cluster and returns its output.
func run(args ...string) string {
	c := exec.Command(kubectl, append([]string{"--kubeconfig", kubecfg}, args...)...)
	out, err := c.CombinedOutput()
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "kubectl %s: %s", strings.Join(args, " "), out)
	return string(out)
}
