// Package failover_test runs two replicas of the operator binary with leader
// election against envtest's API server, a simulated kubelet and a Loki
// receiver, and stops the leader while logs flow.
package failover_test

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/log-capturer/log-capturer/test/envtestutil"
	"github.com/log-capturer/log-capturer/test/kubeletsim"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

const nodeName = "sim-node"

var (
	testEnv    *envtest.Environment
	cfg        *rest.Config
	k8sClient  client.Client
	kubelet    *kubeletsim.Kubelet
	loki       *lokireceiver.Receiver
	lokiURL    string
	binary     string
	kubeconfig string
	ctx        context.Context
	cancel     context.CancelFunc
)

func TestFailover(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Leader failover suite")
}

var _ = BeforeSuite(func() {
	ctx, cancel = context.WithCancel(context.Background())
	DeferCleanup(cancel)
	dir := GinkgoT().TempDir()

	// The replicas are the real binary, as users run it.
	root, err := envtestutil.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	binary = filepath.Join(dir, "log-capturer")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Dir = root
	build.Stdout, build.Stderr = GinkgoWriter, GinkgoWriter
	Expect(build.Run()).To(Succeed())

	testEnv, cfg, k8sClient, err = envtestutil.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(testEnv.Stop)

	user, err := testEnv.AddUser(envtest.User{Name: "operator", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	b, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	kubeconfig = filepath.Join(dir, "kubeconfig")
	Expect(os.WriteFile(kubeconfig, b, 0o600)).To(Succeed())

	kubelet, err = kubeletsim.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(kubelet.Close)
	Expect(kubelet.RegisterNode(ctx, k8sClient, nodeName)).To(Succeed())
	loki = lokireceiver.New()
	srv := httptest.NewServer(loki)
	DeferCleanup(srv.Close)
	DeferCleanup(loki.Close)
	lokiURL = srv.URL
})
