// Package operator_test runs the real operator (RunOperator: controllers,
// workers and sinks as the binary wires them) against envtest's API server,
// a simulated kubelet and a Loki receiver.
package operator_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/log-capturer/log-capturer/internal/cmd"
	"github.com/log-capturer/log-capturer/internal/kubeletsim"
	"github.com/log-capturer/log-capturer/internal/lokireceiver"
	lcruntime "github.com/log-capturer/log-capturer/runtime"
	"github.com/log-capturer/log-capturer/test/envtestutil"
)

const nodeName = "sim-node"

var (
	testEnv   *envtest.Environment
	cfg       *rest.Config
	k8sClient client.WithWatch
	kubelet   *kubeletsim.Kubelet
	loki      *lokireceiver.Receiver
	lokiURL   string
	ctx       context.Context
	cancel    context.CancelFunc
	opDone    = make(chan error, 1)
	workers   = make(chan *lcruntime.Manager, 1)
)

func TestOperator(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Operator suite")
}

var _ = BeforeSuite(func() {
	ctx, cancel = context.WithCancel(context.Background())
	var err error
	testEnv, cfg, k8sClient, err = envtestutil.Start()
	Expect(err).NotTo(HaveOccurred())
	// Registered here, the control plane stops even when AfterSuite fails.
	DeferCleanup(testEnv.Stop)

	kubelet, err = kubeletsim.Start()
	Expect(err).NotTo(HaveOccurred())
	Expect(kubelet.RegisterNode(ctx, k8sClient, nodeName)).To(Succeed())
	loki = lokireceiver.New()
	srv := httptest.NewServer(loki)
	DeferCleanup(srv.Close)
	DeferCleanup(loki.Close)
	lokiURL = srv.URL

	fileRoot := GinkgoT().TempDir()
	go func() {
		opDone <- cmd.RunOperator(ctx, cmd.OperatorOptions{
			RestConfig:          cfg,
			MetricsBindAddress:  "0",
			HealthProbeBindAddr: "0",
			LeaderElect:         false,
			FileSinkRoot:        fileRoot,
			HealthSamplePeriod:  time.Second,
			OnWorkers:           func(m *lcruntime.Manager) { workers <- m },
		})
	}()
})

var _ = AfterSuite(func() {
	cancel()
	Eventually(opDone, "30s").Should(Receive(Not(HaveOccurred())))
	if kubelet != nil {
		Expect(kubelet.Close()).To(Succeed())
	}
})
