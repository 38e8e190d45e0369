package workers_test

import (
	"context"
	"fmt"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/apisource"
	"github.com/log-capturer/log-capturer/capture/workers"
	"github.com/log-capturer/log-capturer/internal/operator"
	"github.com/log-capturer/log-capturer/test/envtestutil"
	"github.com/log-capturer/log-capturer/test/kubeletsim"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

const nodeName = "sim-node"

var (
	testEnv   *envtest.Environment
	cfg       *rest.Config
	k8sClient client.Client
	clientset kubernetes.Interface
	podCache  cache.Cache
	kubelet   *kubeletsim.Kubelet
	ctx       context.Context
	cancel    context.CancelFunc
	cacheDone = make(chan struct{})
)

func TestWorkers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Capture engine suite")
}

var _ = BeforeSuite(func() {
	startEnv()
	// Registered here, the control plane stops even when AfterSuite fails.
	DeferCleanup(testEnv.Stop)
})

// startEnv starts the control plane, the simulated kubelet and the pod cache.
func startEnv() {
	ctx, cancel = context.WithCancel(context.Background())
	var err error
	testEnv, err = envtestutil.NewEnvironment()
	Expect(err).NotTo(HaveOccurred())
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme.Scheme})
	Expect(err).NotTo(HaveOccurred())
	clientset, err = kubernetes.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())

	kubelet, err = kubeletsim.Start()
	Expect(err).NotTo(HaveOccurred())
	Expect(kubelet.RegisterNode(ctx, k8sClient, nodeName)).To(Succeed())

	podCache, err = cache.New(cfg, cache.Options{Scheme: scheme.Scheme})
	Expect(err).NotTo(HaveOccurred())
	_, err = podCache.GetInformer(ctx, &corev1.Pod{})
	Expect(err).NotTo(HaveOccurred())
	go func() {
		defer close(cacheDone)
		_ = podCache.Start(ctx)
	}()
	Expect(podCache.WaitForCacheSync(ctx)).To(BeTrue())
}

var _ = AfterSuite(func() {
	cancel()
	<-cacheDone
	if kubelet != nil {
		Expect(kubelet.Close()).To(Succeed())
	}
})

// harness runs one runtime Manager with memory sinks for a test.
type harness struct {
	mgr     *workers.Manager
	store   *crashableStore
	reg     *prometheus.Registry
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	sinks   map[string]capture.Sink
	factory func(pipeline string, c capture.SinkConfig) capture.Sink
	// closeStreams closes the stream clientset's idle connections.
	closeStreams func()
}

func startHarness(opts ...func(*workers.Options)) *harness {
	h := &harness{reg: prometheus.NewRegistry(), done: make(chan struct{}), sinks: map[string]capture.Sink{}}
	// The client configuration and open rate the operator ships.
	streams, closeStreams, err := operator.NewStreamClientset(cfg)
	Expect(err).NotTo(HaveOccurred())
	h.closeStreams = closeStreams
	o := workers.Options{
		Source:             apisource.New(streams),
		LogOpenRate:        operator.DefaultLogOpenRate,
		LogOpenBurst:       operator.DefaultLogOpenBurst,
		PositionsWriteRate: operator.DefaultPositionsWriteRate,
		Pods:               podCache,
		Sinks: func(pipeline string, c capture.SinkConfig) (capture.Sink, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			var s capture.Sink = &MemorySink{}
			if h.factory != nil {
				s = h.factory(pipeline, c)
			}
			h.sinks[pipeline+"/"+c.Name] = s
			return s, nil
		},
	}
	for _, f := range opts {
		f(&o)
	}
	h.mgr, err = workers.NewManager(o)
	Expect(err).NotTo(HaveOccurred())
	h.reg.MustRegister(h.mgr)
	mctx, mcancel := context.WithCancel(ctx)
	h.cancel = mcancel
	go func() {
		defer close(h.done)
		defer GinkgoRecover()
		Expect(h.mgr.Start(mctx)).To(Succeed())
	}()
	return h
}

func (h *harness) stop() {
	h.cancel()
	Eventually(h.done, 30*time.Second).Should(BeClosed())
	h.closeStreams()
}

func (h *harness) memSink(pipeline types.NamespacedName, sink string) *MemorySink {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, _ := h.sinks[pipeline.String()+"/"+sink].(*MemorySink)
	return s
}

func pipelineConfig(ns, name string, maxStreams int, rotation time.Duration) capture.PipelineConfig {
	return capture.PipelineConfig{
		Namespace: ns, Name: name,
		Selector:           &metav1.LabelSelector{MatchLabels: map[string]string{"app": "gen"}},
		RotationInterval:   rotation,
		MaxStreams:         maxStreams,
		StartFromBeginning: true,
		PodLabels:          []string{"app"},
		Sinks:              []capture.SinkConfig{{Name: "mem", Kind: capture.SinkStdout, Stdout: &capture.StdoutConfig{}}},
	}
}

func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "rt-"}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

// createPods creates n single-container pods bound to the simulated node.
func createPods(ns string, n int) []string {
	names := make([]string, 0, n)
	for i := range n {
		name := fmt.Sprintf("gen-%03d", i)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "gen"}},
			Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{
				{Name: "main", Image: "gen"},
			}},
		}
		kubelet.Container(ns, name, "main")
		Expect(k8sClient.Create(ctx, pod)).To(Succeed())
		names = append(names, name)
	}
	return names
}

// generator writes numbered lines into simulated containers: in bursts, often
// several lines with the very same timestamp, as real programs do.
type generator struct {
	mu     sync.Mutex
	next   map[string]int
	cancel context.CancelFunc
	done   chan struct{}
}

func (g *generator) write(ns, pod string, n int, ts time.Time) {
	c := kubelet.Container(ns, pod, "main")
	key := ns + "/" + pod
	g.mu.Lock()
	defer g.mu.Unlock()
	for range n {
		c.Write(ts, fmt.Sprintf("%s seq=%d payload-%s", pod, g.next[key], strings.Repeat("x", g.next[key]%40)))
		g.next[key]++
	}
}

// run writes a burst to every pod every tick until stopped.
func startGenerator(ns string, pods []string, tick time.Duration) *generator {
	g := &generator{next: map[string]int{}, done: make(chan struct{})}
	gctx, gcancel := context.WithCancel(ctx)
	g.cancel = gcancel
	go func() {
		defer close(g.done)
		t := time.NewTicker(tick)
		defer t.Stop()
		i := 0
		for {
			select {
			case <-gctx.Done():
				return
			case <-t.C:
			}
			now := time.Now()
			for j, p := range pods {
				g.write(ns, p, 1+(i+j)%4, now) // 1..4 lines sharing one timestamp
			}
			i++
		}
	}()
	return g
}

func (g *generator) stop() {
	g.cancel()
	<-g.done
}

func (g *generator) total() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, v := range g.next {
		n += v
	}
	return n
}

func (g *generator) expected() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[string]int{}
	for k, v := range g.next {
		out[k] = v
	}
	return out
}

// lokiRecords turns what a Loki receiver got into records for verify.
func lokiRecords(rcv *lokireceiver.Receiver) []capture.Record {
	var out []capture.Record
	for _, e := range rcv.Entries() {
		out = append(out, capture.Record{Namespace: e.Labels["namespace"], Pod: e.Metadata["pod"], Line: e.Line})
	}
	return out
}

// seqs returns each container's delivered sequence numbers in arrival order.
func seqs(records []capture.Record) map[string][]int {
	out := map[string][]int{}
	for _, r := range records {
		i := strings.Index(r.Line, " seq=")
		if i < 0 {
			continue
		}
		rest := r.Line[i+5:]
		if j := strings.IndexByte(rest, ' '); j >= 0 {
			rest = rest[:j]
		}
		n, err := strconv.Atoi(rest)
		if err == nil {
			out[r.Namespace+"/"+r.Pod] = append(out[r.Namespace+"/"+r.Pod], n)
		}
	}
	return out
}

// verify checks that every generated line arrived exactly once and in order
// per container; it returns a description of every problem.
func verify(records []capture.Record, want map[string]int) []string {
	got := seqs(records)
	var problems []string
	for key, n := range want {
		seq := got[key]
		if len(seq) != n {
			problems = append(problems, fmt.Sprintf("%s: %d lines delivered, %d generated", key, len(seq), n))
		}
		for i, v := range seq {
			if v != i {
				problems = append(problems, fmt.Sprintf("%s: line %d is seq %d (lost, duplicated or reordered)", key, i, v))
				break
			}
		}
	}
	return problems
}

func metaFor(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }

// restart restarts a simulated container between two bursts of the generator.
func (g *generator) restart(ns, pod string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	kubelet.Container(ns, pod, "main").Restart()
}

// ownGoroutines counts the process's goroutines without the simulated
// kubelet's server side, which runs in the test process but is not ours.
func ownGoroutines() int {
	buf := make([]byte, 4<<20)
	buf = buf[:goruntime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "kubeletsim") || strings.Contains(g, "net/http.(*conn).serve") ||
			strings.Contains(g, "net/http.(*connReader).backgroundRead") {
			continue
		}
		n++
	}
	return n
}
