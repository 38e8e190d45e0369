package operator_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

var _ = Describe("The metrics endpoint", func() {
	It("answers only clients the API server authenticates and authorizes, over HTTPS", func() {
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			// The operator's certificate is self-signed unless --metrics-cert-dir has one.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // self-signed on purpose
		}}
		get := func(token string) (int, string) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+metricsAddr+"/metrics", nil)
			Expect(err).NotTo(HaveOccurred())
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := client.Do(req)
			if err != nil {
				return 0, err.Error()
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			return resp.StatusCode, string(b)
		}
		Eventually(func() int { code, _ := get(""); return code }, 30*time.Second, 200*time.Millisecond).Should(Equal(http.StatusUnauthorized))
		plain, err := http.Get("http://" + metricsAddr + "/metrics") //nolint:noctx // a plain request must fail
		if err == nil {
			plain.Body.Close()
			Expect(plain.StatusCode).To(Equal(http.StatusBadRequest), "plain HTTP is not served")
		}

		// ServiceAccount tokens: both authenticated; only the one bound to
		// the metrics reader role is allowed. (Two accounts, because the
		// filter remembers a denial for 30s.)
		const ns = "default"
		cs, err := kubernetes.NewForConfig(cfg)
		Expect(err).NotTo(HaveOccurred())
		tokenOf := func(name string) string {
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
			Expect(k8sClient.Create(ctx, sa)).To(Succeed())
			DeferCleanup(func() { _ = k8sClient.Delete(ctx, sa) })
			tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
				Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			return tr.Status.Token
		}
		code, _ := get(tokenOf("scraper-without-role"))
		Expect(code).To(Equal(http.StatusForbidden), "a token without the metrics-reader role")

		role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "log-capturer-metrics-reader-test"},
			Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}
		Expect(k8sClient.Create(ctx, role)).To(Succeed())
		DeferCleanup(func() { _ = k8sClient.Delete(ctx, role) })
		binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "log-capturer-metrics-reader-test"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "scraper"}}}
		Expect(k8sClient.Create(ctx, binding)).To(Succeed())
		DeferCleanup(func() { _ = k8sClient.Delete(ctx, binding) })
		token := tokenOf("scraper")
		Eventually(func() int { code, _ := get(token); return code }, 30*time.Second, 200*time.Millisecond).Should(Equal(http.StatusOK))
		_, body := get(token)
		Expect(strings.Contains(body, "log_capturer_")).To(BeTrue(), "the metrics are there")
	})
})
