package workers_test

import (
	"fmt"
	"net"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/sinks"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// holdingListener accepts connections and never reads or answers them: a
// destination that hangs every request.
func holdingListener() (addr string, closeAll func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	var (
		mu   sync.Mutex
		held []net.Conn
	)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	return l.Addr().String(), func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			_ = c.Close()
		}
	}
}

var _ = Describe("The memory budget", func() {
	It("keeps 10 namespaces × 5 pipelines with hanging sinks within their shares while a healthy namespace delivers every line", func() {
		const (
			budgetBytes  = 48 << 20
			hogs         = 10
			perNamespace = 5
			lineSize     = 4 << 10
			hogLines     = 2000 // 8 MiB per namespace, read by each of its 5 pipelines
		)
		budget := sinks.NewBudget(budgetBytes)
		factory := sinks.NewFactory(sinks.Options{AllowLoopbackEgress: true, FileRoot: GinkgoT().TempDir(), Budget: budget})
		rcv := lokireceiver.New()
		srv := httptest.NewServer(rcv)
		defer srv.Close()
		defer rcv.Close()
		hang, release := holdingListener()
		defer release()

		// What the hanging namespaces will read is written before the
		// baseline, so that the simulated kubelet's copy is not counted.
		payload := strings.Repeat("h", lineSize)
		var hogNamespaces []string
		for range hogs {
			ns := newNamespace()
			hogNamespaces = append(hogNamespaces, ns)
			pod := createPods(ns, 1)[0]
			c := kubelet.Container(ns, pod, "main")
			now := time.Now()
			for i := range hogLines {
				c.Write(now, fmt.Sprintf("%s seq=%d %s", pod, i, payload))
			}
		}
		healthy := newNamespace()
		healthyPods := createPods(healthy, 2)

		h := startHarness()
		defer h.stop()
		h.mu.Lock()
		h.factory = func(p string, c capture.SinkConfig) capture.Sink {
			s, err := factory.New(p, c)
			Expect(err).NotTo(HaveOccurred())
			return s
		}
		h.mu.Unlock()
		lokiSink := func(url string) capture.SinkConfig {
			return capture.SinkConfig{Name: "loki", Kind: capture.SinkLoki, BatchMaxBytes: 256 << 10,
				BatchMaxWait: 50 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
				BufferMaxBytes: 8 << 20, WhenFull: sinks.Block,
				Loki: &capture.LokiConfig{URL: url, MetadataLabels: []string{"namespace", "container"}}}
		}
		base := heapInUse()

		var hogKeys []types.NamespacedName
		for _, ns := range hogNamespaces {
			for i := range perNamespace {
				key := types.NamespacedName{Namespace: ns, Name: fmt.Sprintf("hog-%d", i)}
				hogKeys = append(hogKeys, key)
				cfg := pipelineConfig(ns, key.Name, 2, time.Hour)
				cfg.Sinks = []capture.SinkConfig{lokiSink("http://" + hang)}
				Expect(h.mgr.Apply(ctx, key, cfg)).To(Succeed())
			}
		}
		healthyKey := types.NamespacedName{Namespace: healthy, Name: "healthy"}
		cfg := pipelineConfig(healthy, healthyKey.Name, 2, 2*time.Second)
		cfg.Sinks = []capture.SinkConfig{lokiSink(srv.URL)}
		gen := startGenerator(healthy, healthyPods, 10*time.Millisecond)
		Expect(h.mgr.Apply(ctx, healthyKey, cfg)).To(Succeed())

		// Every hanging namespace fills its share and is held there.
		share := int64(budgetBytes / (hogs + 1))
		Eventually(func() int {
			full := 0
			for _, ns := range hogNamespaces {
				st, ok := h.mgr.SinkStats(ns, "loki")
				if ok && st.MemoryShareLimited > 0 && st.NamespaceQueuedBytes > share*3/4 {
					full++
				}
			}
			return full
		}, 60*time.Second, 250*time.Millisecond).Should(Equal(hogs), "every hanging namespace reaches its share")
		var peakUsed, peakHeap int64
		for range 10 {
			peakUsed = max(peakUsed, budget.Used())
			peakHeap = max(peakHeap, heapInUse()-base)
			time.Sleep(200 * time.Millisecond)
		}
		st, _ := h.mgr.SinkStats(hogNamespaces[0], "loki")
		GinkgoWriter.Printf("budget: %d MiB for %d namespaces (share %.1f MiB); queues hold %.1f MiB at most; heap grew by %.1f MiB over the baseline; namespace %s holds %.1f MiB, %d lines found its share full\n",
			budgetBytes>>20, hogs+1, float64(share)/(1<<20), float64(peakUsed)/(1<<20), float64(peakHeap)/(1<<20),
			hogNamespaces[0], float64(st.NamespaceQueuedBytes)/(1<<20), st.MemoryShareLimited)
		Expect(peakUsed).To(BeNumerically("<=", budgetBytes), "the queues hold no more than the budget")
		// 50 pipelines × 8 MiB buffers would take 400 MiB without the
		// budget. What a pipeline holds outside it is bounded and documented
		// (docs/limits.md): 256 KiB read but not yet queued, its sink's
		// encoded request (about 2 × batch.maxBytes) and a stream's buffers
		// (about 128 KiB).
		const outside = hogs*perNamespace*(256<<10+2*(256<<10)+128<<10) + 32<<20
		bound := int64(budgetBytes)*11/10 + outside
		GinkgoWriter.Printf("budget: heap bound %.1f MiB = budget × 1.1 + %.1f MiB outside it for %d pipelines\n",
			float64(bound)/(1<<20), float64(outside)/(1<<20), hogs*perNamespace+1)
		Expect(peakHeap).To(BeNumerically("<", bound))
		for _, k := range hogKeys {
			s, ok := h.mgr.Snapshot(k)
			Expect(ok).To(BeTrue())
			Expect(s.Sinks[0].DroppedLines).To(BeZero(), "Block loses nothing")
		}

		// The healthy namespace delivered every line at its rate.
		gen.stop()
		want := gen.expected()
		Eventually(func() []string { return verify(lokiRecords(rcv), want) }, 60*time.Second, 250*time.Millisecond).Should(BeEmpty())
		Expect(rcv.Len()).To(Equal(gen.total()), "no line twice")
		hs, _ := h.mgr.Snapshot(healthyKey)
		Expect(hs.Sinks[0].DroppedLines).To(BeZero())

		// Removing the hanging pipelines gives their shares back.
		release()
		for _, k := range hogKeys {
			Expect(h.mgr.Remove(ctx, k)).To(Succeed())
		}
		Eventually(budget.Used, 60*time.Second, 250*time.Millisecond).Should(BeNumerically("<", share))
	})
})
