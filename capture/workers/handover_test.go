package workers_test

import (
	"context"
	"errors"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/workers"
)

// hangingCloseSink delivers every write at once, as a MemorySink does, but
// its Close waits for its deadline: a destination that never confirms the
// last batch, so that the old workers' drain takes the whole DrainTimeout.
type hangingCloseSink struct{ MemorySink }

func (s *hangingCloseSink) Close(ctx context.Context) error {
	<-ctx.Done()
	return s.MemorySink.Close(ctx)
}

var _ = Describe("Handing over", func() {
	It("applies a new configuration without waiting for the old workers' drain, and resumes exactly where they stopped", func() {
		ns := newNamespace()
		pods := createPods(ns, 3)
		const drain = 3 * time.Second
		h := startHarness(func(o *workers.Options) { o.DrainTimeout = drain })
		defer h.stop()
		old := &hangingCloseSink{}
		h.mu.Lock()
		h.factory = func(string, capture.SinkConfig) capture.Sink { return old }
		h.mu.Unlock()
		key := types.NamespacedName{Namespace: ns, Name: "handover"}
		gen := startGenerator(ns, pods, 5*time.Millisecond)
		Expect(h.mgr.Apply(ctx, key, pipelineConfig(ns, key.Name, 3, time.Hour))).To(Succeed())
		Eventually(old.Len, 20*time.Second).Should(BeNumerically(">", 100))

		next := &MemorySink{}
		h.mu.Lock()
		h.factory = func(string, capture.SinkConfig) capture.Sink { return next }
		h.mu.Unlock()
		start := time.Now()
		Expect(h.mgr.Apply(ctx, key, pipelineConfig(ns, key.Name, 3, 500*time.Millisecond))).To(Succeed())
		took := time.Since(start)
		Expect(took).To(BeNumerically("<", drain/3), "Apply waited for the drain")
		snap, ok := h.mgr.Snapshot(key)
		Expect(ok).To(BeTrue())
		Expect(snap.HandingOver).To(BeTrue())
		Expect(snap.Running).To(BeFalse())
		Consistently(next.Len, drain-time.Second, 100*time.Millisecond).Should(BeZero(), "the new workers read before the old ones stopped")
		Eventually(func() bool { s, _ := h.mgr.Snapshot(key); return s.Running && !s.HandingOver }, 2*drain).Should(BeTrue())
		Eventually(next.Len, 20*time.Second).Should(BeNumerically(">", 0))

		gen.stop()
		want := gen.expected()
		Eventually(func() []string {
			return verify(append(old.Records(), next.Records()...), want)
		}, 60*time.Second, 250*time.Millisecond).Should(BeEmpty(), "every line exactly once across the hand-over")
		GinkgoWriter.Printf("handover: Apply returned in %s while the old workers drained for %s\n", took.Round(time.Millisecond), drain)
	})

	It("removes and deletes without waiting for the drain; Delete says when the workers still stop", func() {
		ns := newNamespace()
		createPods(ns, 1)
		const drain = 2 * time.Second
		h := startHarness(func(o *workers.Options) { o.DrainTimeout = drain })
		defer h.stop()
		s := &hangingCloseSink{}
		h.mu.Lock()
		h.factory = func(string, capture.SinkConfig) capture.Sink { return s }
		h.mu.Unlock()
		key := types.NamespacedName{Namespace: ns, Name: "gone"}
		Expect(h.mgr.Apply(ctx, key, pipelineConfig(ns, key.Name, 1, time.Hour))).To(Succeed())
		Eventually(func() bool { sn, _ := h.mgr.Snapshot(key); return sn.Running }, 10*time.Second).Should(BeTrue())
		start := time.Now()
		err := h.mgr.Delete(ctx, key)
		Expect(time.Since(start)).To(BeNumerically("<", drain/2))
		Expect(errors.Is(err, capture.ErrWorkersStopping)).To(BeTrue(), "got %v", err)
		_, known := h.mgr.Snapshot(key)
		Expect(known).To(BeFalse())
		Eventually(func() error { return h.mgr.Delete(ctx, key) }, 3*drain, 100*time.Millisecond).Should(Succeed())
		Expect(s.Closed()).To(Equal(1))
	})

	It("bounds the streams of one namespace across its pipelines, and leaves other namespaces alone", func() {
		busy, calm := newNamespace(), newNamespace()
		createPods(busy, 6)
		createPods(calm, 2)
		h := startHarness(func(o *workers.Options) { o.MaxStreamsPerNamespace = 2 })
		defer h.stop()
		a := types.NamespacedName{Namespace: busy, Name: "a"}
		b := types.NamespacedName{Namespace: busy, Name: "b"}
		c := types.NamespacedName{Namespace: calm, Name: "c"}
		for _, k := range []types.NamespacedName{a, b, c} {
			Expect(h.mgr.Apply(ctx, k, pipelineConfig(k.Namespace, k.Name, 6, time.Hour))).To(Succeed())
		}
		Eventually(func() int { return snapshot(h, c).ActiveStreams }, 20*time.Second).Should(Equal(2), "calm streams both its containers")
		Eventually(func() int { return snapshot(h, a).ActiveStreams + snapshot(h, b).ActiveStreams }, 20*time.Second).Should(Equal(2))
		Consistently(func() int { return snapshot(h, a).ActiveStreams + snapshot(h, b).ActiveStreams }, 2*time.Second, 50*time.Millisecond).Should(BeNumerically("<=", 2))
		sa, sb := snapshot(h, a), snapshot(h, b)
		Expect(sa.NamespaceLimited+sb.NamespaceLimited).To(Equal(10), "6+6 containers, 2 streaming: 10 wait for the namespace")
		Expect(sa.NamespaceStreams).To(Equal(2))
		Expect(sa.NamespaceStreamLimit).To(Equal(2))
		// Removing one pipeline frees its slots for the other.
		held := sa.ActiveStreams
		Expect(h.mgr.Remove(ctx, a)).To(Succeed())
		if held > 0 {
			Eventually(func() int { return snapshot(h, b).ActiveStreams }, 20*time.Second).Should(Equal(2))
		}
		// A CapturePolicy's limit replaces the operator's for busy alone.
		policed := pipelineConfig(b.Namespace, b.Name, 6, time.Hour)
		policed.NamespaceMaxStreams = 4
		Expect(h.mgr.Apply(ctx, b, policed)).To(Succeed())
		Eventually(func() int { return snapshot(h, b).ActiveStreams }, 20*time.Second).Should(Equal(4))
		Consistently(func() int { return snapshot(h, b).ActiveStreams }, time.Second, 50*time.Millisecond).Should(Equal(4))
		Expect(snapshot(h, b).NamespaceStreamLimit).To(Equal(4))
		Expect(snapshot(h, c).NamespaceStreamLimit).To(Equal(2), "calm keeps the operator's limit")
	})
})
