package workers_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"

	"github.com/log-capturer/log-capturer/capture/workers"
	"github.com/log-capturer/log-capturer/internal/operator"
)

var _ = Describe("Rotating 100 containers every second", func() {
	It("delivers every line once with the client configuration the operator ships, the open rate raised by its flag to fit", func() {
		ns := newNamespace()
		pods := createPods(ns, 100)
		// 100 containers ÷ 1s need 100 opens/s; the shipped default (50/s)
		// does not fit, so the admin raises --log-open-rate, as the docs say.
		const rate = 150
		Expect(float64(operator.DefaultLogOpenRate)).To(BeNumerically("<", 100), "if the default fits, drop the raise")
		h := startHarness(func(o *workers.Options) { o.LogOpenRate, o.LogOpenBurst = rate, rate })
		defer h.stop()
		key := types.NamespacedName{Namespace: ns, Name: "hundred"}
		// 1..4 lines per pod every 50ms: 50 lines/s per container on average.
		gen := startGenerator(ns, pods, 50*time.Millisecond)
		Expect(h.mgr.Apply(ctx, key, pipelineConfig(ns, key.Name, 1000, time.Second))).To(Succeed())
		Eventually(func() int { return snapshot(h, key).SelectedContainers }, 30*time.Second).Should(Equal(100))
		time.Sleep(20 * time.Second)
		gen.stop()
		want := gen.expected()
		sink := h.memSink(key, "mem")
		Eventually(func() []string { return verify(sink.Records(), want) }, 90*time.Second, 500*time.Millisecond).Should(BeEmpty())
		Expect(sink.Len()).To(Equal(gen.total()), "no line twice")
		s := snapshot(h, key)
		avg := s.OpenWait / time.Duration(max(1, s.Opens))
		GinkgoWriter.Printf("opens: 100 containers rotating every 1s at --log-open-rate=%d: %d lines delivered once, %d rotations, %d opens waited %s on average, %d stream errors, %d reconnects\n",
			rate, gen.total(), s.Rotations, s.Opens, avg.Round(time.Millisecond), s.StreamErrors, s.Reconnects)
		Expect(s.OpenRateLimit).To(BeNumerically("==", rate))
		Expect(s.Rotations).To(BeNumerically(">=", 1000), "about 100 rotations a second")
		Expect(s.StreamErrors).To(BeZero())
	})
})
