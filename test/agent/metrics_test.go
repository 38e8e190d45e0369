package agent_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

var _ = Describe("the node agent's metrics", func() {
	It("are served with its node's label, over HTTPS, to scrapers the API server authorizes only", func() {
		tmp := GinkgoT().TempDir()
		podsDir, journal := filepath.Join(tmp, "pods"), filepath.Join(tmp, "journal")
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "metered-1", Labels: map[string]string{"app": "metered"}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "main", Image: "x"}}}}
		Expect(c.Create(ctx, pod)).To(Succeed())
		DeferCleanup(func() { _ = c.Delete(ctx, pod) })
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
		l, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		addr := l.Addr().String()
		Expect(l.Close()).To(Succeed())
		metricsAt = addr
		writesBefore := writes.Load()
		stop := runAgent(podsDir, journal, agentToken(tmp))
		metricsAt = ""

		scraper := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the agent's certificate is self-signed without --metrics-cert-dir
		}}
		defer scraper.CloseIdleConnections()
		get := func(token string) (int, string) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/metrics", nil)
			Expect(err).NotTo(HaveOccurred())
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := scraper.Do(req)
			if err != nil {
				return 0, err.Error()
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
			return resp.StatusCode, string(b)
		}
		Eventually(func() int { code, _ := get(""); return code }, 30*time.Second, 200*time.Millisecond).Should(Equal(http.StatusUnauthorized))

		cs, err := kubernetes.NewForConfig(cfg)
		Expect(err).NotTo(HaveOccurred())
		tokenOf := func(name string) string {
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
			Expect(c.Create(ctx, sa)).To(Succeed())
			DeferCleanup(func() { _ = c.Delete(ctx, sa) })
			tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, name, &authenticationv1.TokenRequest{
				Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			return tr.Status.Token
		}
		code, _ := get(tokenOf("agent-scraper-without-role"))
		Expect(code).To(Equal(http.StatusForbidden), "a token without a role for GET /metrics")

		role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "agent-metrics-reader-test"},
			Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}
		Expect(c.Create(ctx, role)).To(Succeed())
		DeferCleanup(func() { _ = c.Delete(ctx, role) })
		binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "agent-metrics-reader-test"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "default", Name: "agent-scraper"}}}
		Expect(c.Create(ctx, binding)).To(Succeed())
		DeferCleanup(func() { _ = c.Delete(ctx, binding) })
		token := tokenOf("agent-scraper")
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
