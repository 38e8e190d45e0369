// Package operator_test runs the real operator (operator.Run: controllers,
// workers and sinks as the binary wires them) against envtest's API server,
// a simulated kubelet and a Loki receiver.
package operator_test

import (
	"context"
	"net"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/internal/operator"
	"github.com/log-capturer/log-capturer/test/envtestutil"
	"github.com/log-capturer/log-capturer/test/kubeletsim"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
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
	// metricsAddr is where the operator serves its metrics.
	metricsAddr string
	// leaky names the pipeline ("<namespace>/<name>") whose sinks leak
	// goroutines, owned and counted like real ones (the leak test).
	leaky atomic.Value
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
	// Metrics as shipped (HTTPS, authenticated and authorized), on a port
	// picked here so that the metrics spec can reach it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	metricsAddr = l.Addr().String()
	Expect(l.Close()).To(Succeed())
	go func() {
		opDone <- operator.Run(ctx, operator.Options{
			RestConfig:          cfg,
			MetricsBindAddress:  metricsAddr,
			HealthProbeBindAddr: "0",
			LeaderElect:         false,
			FileSinkRoot:        fileRoot,
			// The Loki receiver runs on this host's loopback.
			AllowLoopbackEgress: true,
			HealthSamplePeriod:  time.Second,
			WrapSinks:           leakyFor,
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

// leakyFor makes the sinks of the pipeline named by leaky leak 3 goroutines
// a minute through capture.Go, so that the pipeline owns and counts them as
// it would a real leak; every other sink is the operator's own.
func leakyFor(next capture.SinkFactory) capture.SinkFactory {
	return func(pipeline string, c capture.SinkConfig) (capture.Sink, error) {
		s, err := next(pipeline, c)
		if err != nil || leaky.Load() != pipeline {
			return s, err
		}
		return &leakySink{Sink: s, perMinute: 3}, nil
	}
}

// leakySink is a sink whose sender starts perMinute goroutines a minute that
// live until the pipeline stops.
type leakySink struct {
	capture.Sink
	perMinute int
}

func (s *leakySink) Run(ctx context.Context) {
	capture.Go(ctx, func(ctx context.Context) {
		t := time.NewTicker(time.Minute / time.Duration(s.perMinute))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				capture.Go(ctx, func(ctx context.Context) { <-ctx.Done() })
			}
		}
	})
	s.Sink.Run(ctx)
}

// Stats passes the wrapped sink's numbers on.
func (s *leakySink) Stats() capture.SinkStats { return s.Sink.(capture.StatsReporter).Stats() }
