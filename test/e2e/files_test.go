//go:build e2e

package e2e_test

import (
	"context"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/log-capturer/log-capturer/capture"
	engine "github.com/log-capturer/log-capturer/capture/workers"
)

// lineSink keeps the text of every record it gets.
type lineSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *lineSink) Write(_ context.Context, r *capture.Record) error {
	s.mu.Lock()
	s.lines = append(s.lines, r.Line)
	s.mu.Unlock()
	r.Ack()
	return nil
}

func (s *lineSink) Run(context.Context) {}

func (s *lineSink) Close(context.Context) error { return nil }

func (s *lineSink) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// fileCapture is the capture engine run in this process on the node's own
// files under /var/log/pods, beside the operator that reads through the
// API: the same writers, read the way the node agent will read them.
type fileCapture struct {
	mgr  *engine.Manager
	key  types.NamespacedName
	sink *lineSink
}

func startFileCapture() *fileCapture {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubecfg)
	Expect(err).NotTo(HaveOccurred())
	nodes := &corev1.NodeList{}
	Expect(k8sClient.List(ctx, nodes)).To(Succeed())
	Expect(nodes.Items).To(HaveLen(1))
	pods, err := cache.New(cfg, cache.Options{Scheme: scheme.Scheme, DefaultNamespaces: map[string]cache.Config{ns: {}}})
	Expect(err).NotTo(HaveOccurred())
	c, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = pods.Start(c) })
	Expect(pods.WaitForCacheSync(c)).To(BeTrue())
	fc := &fileCapture{key: types.NamespacedName{Namespace: ns, Name: "files"}, sink: &lineSink{}}
	fc.mgr, err = engine.NewManager(engine.Options{
		Files: &engine.FileSource{Root: "/var/log/pods", Node: nodes.Items[0].Name},
		Pods:  pods,
		Sinks: func(string, capture.SinkConfig) (capture.Sink, error) { return fc.sink, nil },
	})
	Expect(err).NotTo(HaveOccurred())
	wg.Go(func() { _ = fc.mgr.Start(c) })
	Expect(fc.mgr.Apply(c, fc.key, capture.PipelineConfig{
		Namespace: ns, Name: fc.key.Name, UID: "e2e-files",
		Selector:           &metav1.LabelSelector{MatchLabels: map[string]string{"app": "writer"}},
		RotationInterval:   20 * time.Second,
		MaxStreams:         20,
		StartFromBeginning: true,
		Sinks:              []capture.SinkConfig{{Name: "lines", Kind: capture.SinkStdout, Stdout: &capture.StdoutConfig{}}},
	})).To(Succeed())
	DeferCleanup(func() {
		cancel()
		wg.Wait()
	})
	return fc
}

func (fc *fileCapture) snapshot() capture.Snapshot {
	s, _ := fc.mgr.Snapshot(fc.key)
	return s
}
