package workers_test

import (
	"context"
	goruntime "runtime"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/workers"
)

func snapshot(h *harness, key types.NamespacedName) capture.Snapshot {
	s, ok := h.mgr.Snapshot(key)
	ExpectWithOffset(1, ok).To(BeTrue())
	return s
}

// settle waits until goroutines and FDs are no more than at the baseline.
func settle(baseG, baseFD int) {
	EventuallyWithOffset(1, ownGoroutines, 30*time.Second, 100*time.Millisecond).
		Should(BeNumerically("<=", baseG), "goroutines return to the baseline")
	EventuallyWithOffset(1, workers.OpenFDs, 30*time.Second, 100*time.Millisecond).
		Should(BeNumerically("<=", baseFD), "file descriptors return to the baseline")
}

// warmUp opens and closes one stream so that the client's HTTP/2 connection
// to the API server exists before a baseline is taken.
func warmUp(ns, pod string) {
	body, err := clientset.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: "main"}).Stream(ctx)
	Expect(err).NotTo(HaveOccurred())
	Expect(body.Close()).To(Succeed())
}

var _ = Describe("Capture workers", func() {
	It("deliver every line exactly once and in order across 500 rotations of a time-sliced pool", func() {
		ns := newNamespace()
		pods := createPods(ns, 20)
		warmUp(ns, pods[0])
		kubelet.ResetMaxActiveStreams()
		h := startHarness()
		defer h.stop()
		key := types.NamespacedName{Namespace: ns, Name: "pool"}
		gen := startGenerator(ns, pods, 10*time.Millisecond)
		Expect(h.mgr.Apply(ctx, key, pipelineConfig(ns, "pool", 5, 200*time.Millisecond))).To(Succeed())

		var samples []capture.Snapshot
		Eventually(func() int64 {
			s := snapshot(h, key)
			samples = append(samples, s)
			return s.Rotations
		}, 120*time.Second, 250*time.Millisecond).Should(BeNumerically(">=", 500))
		gen.stop()
		want := gen.expected()
		sink := h.memSink(key, "mem")
		Eventually(func() []string { return verify(sink.Records(), want) }, 60*time.Second, 250*time.Millisecond).Should(BeEmpty())
		Consistently(sink.Len, time.Second, 100*time.Millisecond).Should(Equal(gen.total()), "nothing arrives twice later")

		// Counted at the far end: a stream ends when its request is gone, less
		// the API server's teardown of the proxied request during a handover.
		Expect(kubelet.MaxOverlap(50*time.Millisecond)).To(BeNumerically("<=", 5), "the kubelet never served more than maxStreams at once")
		exact := 0
		for _, s := range samples {
			Expect(s.ActiveStreams).To(BeNumerically("<=", 5))
			Expect(s.OpenStreams).To(BeNumerically("<=", 5))
			// The loop, the fan-out, the health sampler, the positions writer and one goroutine per
			// active stream (a MemorySink has no sender). A slice that has
			// handed back its result may not have returned yet when the next
			// one starts, so a sample can see one more per stream, never two.
			if s.ActiveStreams > 0 {
				Expect(s.Goroutines - 4).To(BeNumerically("<=", 2*s.ActiveStreams))
			}
			if s.Goroutines == 4+s.ActiveStreams {
				exact++
			}
		}
		Expect(exact).To(BeNumerically(">=", len(samples)*9/10), "almost every sample sees exactly one goroutine per stream")
		last := snapshot(h, key)
		Expect(last.SelectedContainers).To(Equal(20))
		Expect(last.LinesTotal).To(Equal(int64(gen.total())))
		GinkgoWriter.Printf("rotations=%d lines=%d reconnects=%d errors=%d kubeletMax=%d kubeletMaxBeyondHandover=%d\n",
			last.Rotations, last.LinesTotal, last.Reconnects, last.StreamErrors, kubelet.MaxActiveStreams(), kubelet.MaxOverlap(50*time.Millisecond))
	})

	It("return goroutines and file descriptors to the baseline and do not grow with rotations", func() {
		ns := newNamespace()
		pods := createPods(ns, 10)
		warmUp(ns, pods[0])
		goruntime.GC()
		baseG, baseFD := ownGoroutines(), workers.OpenFDs()

		h := startHarness()
		key := types.NamespacedName{Namespace: ns, Name: "leak"}
		gen := startGenerator(ns, pods, 20*time.Millisecond)
		err := h.mgr.Apply(ctx, key, pipelineConfig(ns, "leak", 10, 100*time.Millisecond))
		Expect(err).NotTo(HaveOccurred())

		Eventually(func() int { return snapshot(h, key).ActiveStreams }, 20*time.Second, 50*time.Millisecond).Should(Equal(10))
		Eventually(func() int64 { return snapshot(h, key).Rotations }, 30*time.Second, 50*time.Millisecond).Should(BeNumerically(">=", 100))
		early, earlyRot := ownGoroutines(), snapshot(h, key).Rotations
		Eventually(func() int64 { return snapshot(h, key).Rotations }, 60*time.Second, 50*time.Millisecond).Should(BeNumerically(">=", earlyRot+300))
		late := ownGoroutines()
		s := snapshot(h, key)
		perStream := float64(late-baseG-3) / float64(max(s.ActiveStreams, 1))
		GinkgoWriter.Printf("baseline=%d early=%d late=%d active=%d goroutines/stream=%.2f pipeline=%d\n",
			baseG, early, late, s.ActiveStreams, perStream, s.Goroutines)
		Expect(late-early).To(BeNumerically("<=", 3), "300 rotations later the goroutine count has not grown")
		Expect(perStream).To(BeNumerically("<=", 2.5), "about 2 goroutines per active stream: ours and the HTTP/2 transport's")

		gen.stop()
		Expect(h.mgr.Remove(ctx, key)).To(Succeed())
		_, ok := h.mgr.Snapshot(key)
		Expect(ok).To(BeFalse())
		h.stop()
		Expect(h.memSink(key, "mem").Closed()).To(Equal(1), "the sink is closed exactly once")
		settle(baseG, baseFD)
	})

	It("survive 500s, connections cut mid-line, stalls, restarts and deleted pods without loss or duplicates", func() {
		ns := newNamespace()
		pods := createPods(ns, 6)
		h := startHarness()
		defer h.stop()
		key := types.NamespacedName{Namespace: ns, Name: "faults"}
		gen := startGenerator(ns, pods, 10*time.Millisecond)
		err := h.mgr.Apply(ctx, key, pipelineConfig(ns, "faults", 6, 300*time.Millisecond))
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() int64 { return snapshot(h, key).Rotations }, 20*time.Second).Should(BeNumerically(">=", 12))

		kubelet.Container(ns, pods[0], "main").FailNext(3, 500)
		kubelet.Container(ns, pods[1], "main").CutNext(5, 700)
		kubelet.Container(ns, pods[2], "main").StallNext(2)
		gen.restart(ns, pods[3])
		Eventually(func() int64 { return snapshot(h, key).StreamErrors }, 20*time.Second).Should(BeNumerically(">=", 3))
		Eventually(func() int64 { return snapshot(h, key).Rotations }, 20*time.Second).Should(BeNumerically(">=", 60))

		// pods[4] ends: its last lines must arrive before its pod goes away.
		gen.stop()
		kubelet.Container(ns, pods[4], "main").Terminate()
		want := gen.expected()
		sink := h.memSink(key, "mem")
		Eventually(func() []string { return verify(sink.Records(), want) }, 60*time.Second, 250*time.Millisecond).Should(BeEmpty())
		Expect(k8sClient.Delete(ctx, &corev1.Pod{ObjectMeta: metaFor(ns, pods[4])}, client.GracePeriodSeconds(0))).To(Succeed())
		Eventually(func() int { return snapshot(h, key).SelectedContainers }, 20*time.Second).Should(Equal(5))
		Eventually(func() int { return snapshot(h, key).ActiveStreams }, 20*time.Second).Should(Equal(5))
		Consistently(sink.Len, time.Second, 100*time.Millisecond).Should(Equal(gen.total()))
	})

	It("wait for their turn under an open rate set too low, lose nothing, and show the wait in their numbers", func() {
		ns := newNamespace()
		pods := createPods(ns, 10)
		// 10 containers rotating every second need 10 opens/s; allow 2.
		h := startHarness(func(o *workers.Options) { o.LogOpenRate, o.LogOpenBurst = 2, 1 })
		defer h.stop()
		key := types.NamespacedName{Namespace: ns, Name: "limited"}
		gen := startGenerator(ns, pods, 20*time.Millisecond)
		Expect(h.mgr.Apply(ctx, key, pipelineConfig(ns, "limited", 10, time.Second))).To(Succeed())
		Eventually(func() int64 { return snapshot(h, key).Rotations }, 30*time.Second).Should(BeNumerically(">=", 20))
		s := snapshot(h, key)
		avg := s.OpenWait / time.Duration(max(1, s.Opens))
		GinkgoWriter.Printf("open rate 2/s for 10 containers rotating every 1s: %d opens waited %s on average, %d rotations\n",
			s.Opens, avg.Round(time.Millisecond), s.Rotations)
		Expect(s.OpenRateLimit).To(BeNumerically("==", 2))
		Expect(avg).To(BeNumerically(">", time.Second), "the wait for the open rate shows in the numbers")
		// Waiting to open is neither a rotation nor a stream error: each
		// rotation is a stream that was open and read for the interval.
		Expect(s.StreamErrors).To(BeZero())
		gen.stop()
		want := gen.expected()
		sink := h.memSink(key, "mem")
		Eventually(func() []string { return verify(sink.Records(), want) }, 60*time.Second, 250*time.Millisecond).Should(BeEmpty())
	})

	It("stops reading when the sink is full and resumes without loss", func() {
		ns := newNamespace()
		pods := createPods(ns, 3)
		h := startHarness()
		defer h.stop()
		gate := &gatedSink{open: make(chan struct{})}
		h.factory = func(string, capture.SinkConfig) capture.Sink { return gate }
		key := types.NamespacedName{Namespace: ns, Name: "backpressure"}
		gen := startGenerator(ns, pods, 5*time.Millisecond)
		err := h.mgr.Apply(ctx, key, pipelineConfig(ns, "backpressure", 3, 200*time.Millisecond))
		Expect(err).NotTo(HaveOccurred())

		Eventually(func() int64 { return snapshot(h, key).LinesTotal }, 20*time.Second).Should(BeNumerically(">", 0))
		time.Sleep(2 * time.Second)
		read := snapshot(h, key).LinesTotal
		Expect(read).To(BeNumerically("<=", 512+3), "reading stops at the bounded buffer")
		Expect(gen.total()).To(BeNumerically(">", int(read)+1000), "far more was written than read")
		Consistently(func() int64 { return snapshot(h, key).LinesTotal }, time.Second, 100*time.Millisecond).Should(Equal(read))

		close(gate.open)
		gen.stop()
		want := gen.expected()
		Eventually(func() []string { return verify(gate.records(), want) }, 60*time.Second, 250*time.Millisecond).Should(BeEmpty())
	})
})

// gatedSink blocks every write until open is closed.
type gatedSink struct {
	open chan struct{}
	mu   sync.Mutex
	recs []capture.Record
}

func (g *gatedSink) Write(ctx context.Context, r *capture.Record) error {
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.mu.Lock()
	g.recs = append(g.recs, *r)
	g.mu.Unlock()
	return nil
}

func (g *gatedSink) Run(context.Context) {}

func (g *gatedSink) Close(context.Context) error { return nil }

func (g *gatedSink) records() []capture.Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]capture.Record(nil), g.recs...)
}
