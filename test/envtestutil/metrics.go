package envtestutil

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// MetricsScraper gets /metrics from an HTTPS endpoint with a self-signed
// certificate (the operator's or an agent's without --metrics-cert-dir), as
// a Prometheus scraper with a bearer token does.
type MetricsScraper struct {
	url    string
	client *http.Client
}

// NewMetricsScraper scrapes https://addr/metrics.
func NewMetricsScraper(addr string) *MetricsScraper {
	return &MetricsScraper{url: "https://" + addr + "/metrics", client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // self-signed on purpose
	}}}
}

// Get scrapes once with token (none when empty) and returns the status code
// and body, or 0 and the error.
func (s *MetricsScraper) Get(ctx context.Context, token string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return 0, err.Error()
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, string(b)
}

// Close closes the scraper's idle connections.
func (s *MetricsScraper) Close() { s.client.CloseIdleConnections() }

// MetricsTokens makes two ServiceAccounts <prefix>-scraper and
// <prefix>-stranger in ns, the first bound to a ClusterRole that may GET
// /metrics, and returns their tokens and what removes it all. (Two
// accounts, because the metrics filter remembers a denial for 30s.)
func MetricsTokens(ctx context.Context, c client.Client, cs kubernetes.Interface, ns, prefix string) (allowed, denied string, cleanup func(), err error) {
	var undo []client.Object
	cleanup = func() {
		for _, o := range undo {
			_ = c.Delete(ctx, o)
		}
	}
	create := func(o client.Object) error {
		if err := c.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %s: %w", o.GetName(), err)
		}
		undo = append(undo, o)
		return nil
	}
	token := func(name string) (string, error) {
		if err := create(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
			return "", err
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
		if err != nil {
			return "", fmt.Errorf("requesting a token of %s: %w", name, err)
		}
		return tr.Status.Token, nil
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: prefix + "-metrics-reader"},
		Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: prefix + "-metrics-reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: prefix + "-scraper"}}}
	if allowed, err = token(prefix + "-scraper"); err == nil {
		if denied, err = token(prefix + "-stranger"); err == nil {
			err = errors.Join(create(role), create(binding))
		}
	}
	if err != nil {
		cleanup()
		return "", "", func() {}, err
	}
	return allowed, denied, cleanup, nil
}
