package agent_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/test/envtestutil"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

var _ = Describe("the node agent's metrics", func() {
	It("are served with its node's label, over HTTPS, to scrapers the API server authorizes only", func() {
		tmp := GinkgoT().TempDir()
		podsDir, journal := filepath.Join(tmp, "pods"), filepath.Join(tmp, "journal")
		pod := podOnNode("shop", "metered-1", map[string]string{"app": "metered"})
		writePodLines(filepath.Join(podsDir, "shop_metered-1_"+string(pod.UID), "main"), "metered", 0, 250)
		receiver := lokireceiver.New()
		rsrv := httptest.NewServer(receiver)
		DeferCleanup(func() { receiver.Close(); rsrv.Close() })
		key := types.NamespacedName{Namespace: "shop", Name: "metered"}
		book.Apply(key, capture.PipelineConfig{
			Namespace: "shop", Name: "metered", UID: "metered-uid", RotationInterval: 2 * time.Second, MaxStreams: 5, StartFromBeginning: true,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "metered"}},
			Sinks: []capture.SinkConfig{{Name: "loki", Kind: capture.SinkLoki, BatchMaxBytes: 64 << 10, BatchMaxWait: 50 * time.Millisecond,
				BufferMaxBytes: 1 << 20, WhenFull: "Block", MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
				Loki: &capture.LokiConfig{URL: rsrv.URL}}},
		})
		DeferCleanup(func() { book.Delete(key) })

		baseline := runtime.NumGoroutine()
		addr := freeAddr()
		metricsAt = addr
		writesBefore := writes.Load()
		stop := runAgent(podsDir, journal, agentToken(tmp))
		metricsAt = ""

		scraper := envtestutil.NewMetricsScraper(addr) // the agent's certificate is self-signed without --metrics-cert-dir
		defer scraper.Close()
		get := func(token string) (int, string) { return scraper.Get(ctx, token) }
		Eventually(func() int { code, _ := get(""); return code }, 30*time.Second, 200*time.Millisecond).Should(Equal(http.StatusUnauthorized))
		cs, err := kubernetes.NewForConfig(cfg)
		Expect(err).NotTo(HaveOccurred())
		token, denied, cleanup, err := envtestutil.MetricsTokens(ctx, c, cs, "default", "agent")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(cleanup)
		code, _ := get(denied)
		Expect(code).To(Equal(http.StatusForbidden), "a token without a role for GET /metrics")
		var body string
		Eventually(func(g Gomega) {
			code, body = get(token)
			g.Expect(code).To(Equal(http.StatusOK))
			g.Expect(body).To(ContainSubstring(`log_capturer_logs_processed_total{node="` + node + `",pipeline="shop/metered"} 250`))
		}, 30*time.Second, 200*time.Millisecond).Should(Succeed())
		for _, series := range []string{
			`log_capturer_file_containers{node="` + node + `",pipeline="shop/metered"} 1`,
			`log_capturer_unread_bytes{node="` + node + `",pipeline="shop/metered"}`,
			`log_capturer_goroutines{node="` + node + `"}`,
			`go_goroutines{node="` + node + `"}`,
			`process_open_fds{node="` + node + `"}`,
		} {
			Expect(body).To(ContainSubstring(series))
		}

		Expect(stop()).To(Succeed())
		Expect(writes.Load()).To(Equal(writesBefore), "the agent wrote to the API server (its reviews of scrapers are not writes)")
		_, err = net.DialTimeout("tcp", addr, time.Second)
		Expect(err).To(HaveOccurred(), "the metrics endpoint is closed once the agent stopped")
		Eventually(runtime.NumGoroutine, 10*time.Second, 100*time.Millisecond).Should(BeNumerically("<=", baseline))
	})
})
