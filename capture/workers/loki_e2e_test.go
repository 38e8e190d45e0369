package workers_test

import (
	"net/http/httptest"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/sinks"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

var _ = Describe("Pipeline to Loki", func() {
	It("delivers every line once through the API server to a Loki receiver, across a credential rotation", func() {
		rcv := lokireceiver.New()
		srv := httptest.NewServer(rcv)
		defer srv.Close()
		defer rcv.Close()
		factory := sinks.NewFactory(sinks.Options{AllowLoopbackEgress: true, FileRoot: GinkgoT().TempDir()})

		ns := newNamespace()
		pods := createPods(ns, 4)
		h := startHarness()
		defer h.stop()
		h.factory = func(p string, c capture.SinkConfig) capture.Sink {
			s, err := factory.New(p, c)
			Expect(err).NotTo(HaveOccurred())
			return s
		}
		cfg := pipelineConfig(ns, "loki", 4, 500*time.Millisecond)
		cfg.Sinks = []capture.SinkConfig{{Name: "loki", Kind: capture.SinkLoki, BatchMaxBytes: 256 << 10,
			BatchMaxWait: 50 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
			BufferMaxBytes: 8 << 20, WhenFull: sinks.Block,
			Loki: &capture.LokiConfig{URL: srv.URL, MetadataLabels: []string{"namespace", "container"},
				PodLabelsAsLabels: []string{"app"}, Credentials: capture.Credentials{BearerToken: "first"}}}}
		key := types.NamespacedName{Namespace: ns, Name: "loki"}
		gen := startGenerator(ns, pods, 10*time.Millisecond)
		err := h.mgr.Apply(ctx, key, cfg)
		Expect(err).NotTo(HaveOccurred())
		Eventually(rcv.Len, 20*time.Second).Should(BeNumerically(">", 500))

		// The Secret behind the token changed: the controller applies a new config.
		cfg.Sinks[0].Loki.Credentials.BearerToken = "second"
		Expect(h.mgr.Apply(ctx, key, cfg)).To(Succeed())
		Eventually(func() string {
			hs := rcv.Headers()
			return hs[len(hs)-1].Get("Authorization")
		}, 20*time.Second).Should(Equal("Bearer second"))
		time.Sleep(time.Second)
		gen.stop()
		want := gen.expected()

		Eventually(func() []string { return verify(lokiRecords(rcv), want) }, 60*time.Second, 250*time.Millisecond).Should(BeEmpty())
		Expect(rcv.Len()).To(Equal(gen.total()), "no line twice")
		Expect(rcv.Problems()).To(BeEmpty())
		e := rcv.Entries()[0]
		Expect(e.Labels).To(HaveKeyWithValue("app", "gen"))
		Expect(e.Labels).To(HaveKeyWithValue("container", "main"))
		Expect(e.Metadata).To(HaveKeyWithValue("node", nodeName))
		Expect(strings.HasPrefix(e.Metadata["pod"], "gen-")).To(BeTrue())
		s, _ := h.mgr.Snapshot(key)
		Expect(s.Sinks).To(HaveLen(1))
		Expect(s.Sinks[0].SentLines).To(BeNumerically(">", 0))
	})
})
