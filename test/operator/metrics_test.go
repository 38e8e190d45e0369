package operator_test

import (
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/kubernetes"

	"github.com/log-capturer/log-capturer/test/envtestutil"
)

var _ = Describe("The metrics endpoint", func() {
	It("answers only clients the API server authenticates and authorizes, over HTTPS", func() {
		// The operator's certificate is self-signed unless --metrics-cert-dir has one.
		scraper := envtestutil.NewMetricsScraper(metricsAddr)
		defer scraper.Close()
		Eventually(func() int { code, _ := scraper.Get(ctx, ""); return code }, 30*time.Second, 200*time.Millisecond).Should(Equal(http.StatusUnauthorized))
		plain, err := http.Get("http://" + metricsAddr + "/metrics") //nolint:noctx // a plain request must fail
		if err == nil {
			plain.Body.Close()
			Expect(plain.StatusCode).To(Equal(http.StatusBadRequest), "plain HTTP is not served")
		}

		// ServiceAccount tokens: both authenticated; only the one bound to
		// a role that may GET /metrics is allowed.
		cs, err := kubernetes.NewForConfig(cfg)
		Expect(err).NotTo(HaveOccurred())
		allowed, denied, cleanup, err := envtestutil.MetricsTokens(ctx, k8sClient, cs, "default", "operator")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(cleanup)
		code, _ := scraper.Get(ctx, denied)
		Expect(code).To(Equal(http.StatusForbidden), "a token without the metrics-reader role")
		Eventually(func() int { code, _ := scraper.Get(ctx, allowed); return code }, 30*time.Second, 200*time.Millisecond).Should(Equal(http.StatusOK))
		_, body := scraper.Get(ctx, allowed)
		Expect(strings.Contains(body, "log_capturer_")).To(BeTrue(), "the metrics are there")
	})
})
