package control_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/log-capturer/log-capturer/agent/control"
	"github.com/log-capturer/log-capturer/agent/identity"
	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/test/envtestutil"
)

func TestControl(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Agent control suite")
}

const (
	agentNS = "log-capturer-system"
	agentSA = "log-capturer-agent"
)

var (
	ctx    context.Context
	c      client.Client
	cs     *kubernetes.Clientset
	book   *control.Book
	fleet  *control.Fleet
	podsRd client.Reader
	srv    *httptest.Server
	tokens = map[string]string{} // by node
)

func create(o client.Object) { ExpectWithOffset(1, c.Create(ctx, o)).To(Succeed()) }

func pod(ns, name, node string, labels map[string]string, sa string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: sa, Containers: []corev1.Container{{Name: "main", Image: "x"}}}}
	ExpectWithOffset(1, c.Create(ctx, p)).To(Succeed())
	return p
}

// pipeline applies a pipeline whose one Loki sink carries secret.
func pipeline(ns, name string, match map[string]string, secret string) {
	cfg := capture.PipelineConfig{Namespace: ns, Name: name, UID: ns + "-" + name, RotationInterval: time.Minute, MaxStreams: 10,
		Sinks: []capture.SinkConfig{{Name: "loki", Kind: capture.SinkLoki,
			Loki: &capture.LokiConfig{URL: "http://loki." + ns + ":3100", Credentials: capture.Credentials{Password: secret}}}}}
	if match != nil {
		cfg.Selector = &metav1.LabelSelector{MatchLabels: match}
	}
	book.Apply(types.NamespacedName{Namespace: ns, Name: name}, cfg)
}

var _ = BeforeSuite(func() {
	ctx = context.Background()
	env, cfg, cl, err := envtestutil.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(env.Stop)
	c = cl
	cs, err = kubernetes.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())
	for _, ns := range []string{agentNS, "shop", "bank"} {
		create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	create(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: agentNS, Name: agentSA}})
	for _, n := range []string{"node-a", "node-b", "node-c"} {
		create(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}})
		p := pod(agentNS, "agent-"+n, n, nil, agentSA)
		tokens[n], err = envtestutil.PodToken(ctx, cs, agentNS, agentSA, p, identity.Audience)
		Expect(err).NotTo(HaveOccurred())
	}
	pod("shop", "web-1", "node-a", map[string]string{"app": "web"}, "")
	pod("shop", "db-1", "node-b", map[string]string{"app": "db"}, "")
	pod("bank", "ledger-1", "node-b", map[string]string{"app": "ledger"}, "")

	pods, err := cache.New(cfg, cache.Options{Scheme: c.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	Expect(control.IndexPodsByNode(ctx, pods)).To(Succeed())
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = pods.Start(cctx) }()
	DeferCleanup(func() { cancel(); <-done })
	Expect(pods.WaitForCacheSync(cctx)).To(BeTrue())

	podsRd = pods
	book = control.NewBook()
	fleet = &control.Fleet{StaleAfter: time.Minute}
	pipeline("shop", "web", map[string]string{"app": "web"}, "web-secret")
	pipeline("shop", "db", map[string]string{"app": "db"}, "db-secret")
	pipeline("bank", "all", nil, "bank-secret")
	srv = httptest.NewServer(&control.Handler{Book: book, Pods: control.CachePods{Reader: pods},
		Verifier: identity.NewVerifier(c, agentNS, agentSA, time.Minute), Fleet: fleet, MaxWait: 10 * time.Second})
	DeferCleanup(srv.Close)
})

// get asks for the configuration with token; query and etag are optional.
func get(token, query, etag string) (int, string, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/config"+query, nil)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if etag != "" {
		req.Header.Set("If-None-Match", `"`+etag+`"`)
	}
	resp, err := http.DefaultClient.Do(req)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return resp.StatusCode, string(b), strings.Trim(resp.Header.Get("ETag"), `"`)
}

func names(body string) []string {
	var nc control.NodeConfig
	ExpectWithOffset(1, json.Unmarshal([]byte(body), &nc)).To(Succeed())
	out := []string{}
	for _, p := range nc.Pipelines {
		out = append(out, p.Namespace+"/"+p.Name)
	}
	return out
}

var _ = Describe("the agents' configuration", func() {
	It("sends each node only the pipelines with pods on it, and only their credentials", func() {
		code, body, _ := get(tokens["node-a"], "", "")
		Expect(code).To(Equal(http.StatusOK), body)
		Expect(names(body)).To(Equal([]string{"shop/web"}))
		Expect(body).To(ContainSubstring("web-secret"))
		Expect(body).NotTo(Or(ContainSubstring("db-secret"), ContainSubstring("bank-secret")))

		code, body, _ = get(tokens["node-b"], "?node=node-b", "")
		Expect(code).To(Equal(http.StatusOK), body)
		Expect(names(body)).To(Equal([]string{"bank/all", "shop/db"}))
		Expect(body).NotTo(ContainSubstring("web-secret"))

		code, body, _ = get(tokens["node-c"], "", "")
		Expect(code).To(Equal(http.StatusOK), body)
		Expect(names(body)).To(BeEmpty())
	})

	It("refuses an agent asking for another node, and requests without an agent's token", func() {
		code, body, _ := get(tokens["node-a"], "?node=node-b", "")
		Expect(code).To(Equal(http.StatusForbidden))
		Expect(body).To(ContainSubstring(`the agent of node "node-a" asked for node "node-b"`))
		Expect(body).NotTo(Or(ContainSubstring("secret"), ContainSubstring("shop/")))

		for _, tok := range []string{"", "garbage"} {
			code, body, _ = get(tok, "", "")
			Expect(code).To(Equal(http.StatusUnauthorized), tok)
			Expect(body).NotTo(ContainSubstring("secret"))
		}
		code, _, _ = get(tokens["node-a"], "?wait=soon", "")
		Expect(code).To(Equal(http.StatusBadRequest))
	})

	It("answers Not Modified when nothing changed, and a change at once to an agent waiting for it", func() {
		code, _, rev := get(tokens["node-a"], "", "")
		Expect(code).To(Equal(http.StatusOK))
		Expect(rev).NotTo(BeEmpty())

		start := time.Now()
		code, _, again := get(tokens["node-a"], "?wait=500ms", rev)
		Expect(code).To(Equal(http.StatusNotModified))
		Expect(again).To(Equal(rev))
		Expect(time.Since(start)).To(BeNumerically(">=", 500*time.Millisecond))

		// A change elsewhere wakes the waiting agent but is not its
		// change: it keeps waiting.
		go func() {
			defer GinkgoRecover()
			time.Sleep(300 * time.Millisecond)
			pipeline("bank", "audit", nil, "audit-secret")
			time.Sleep(300 * time.Millisecond)
			pipeline("shop", "web-debug", map[string]string{"app": "web"}, "debug-secret")
		}()
		start = time.Now()
		code, body, next := get(tokens["node-a"], "?wait=10s", rev)
		Expect(code).To(Equal(http.StatusOK), body)
		Expect(time.Since(start)).To(BeNumerically("<", 5*time.Second))
		Expect(next).NotTo(Equal(rev))
		Expect(names(body)).To(Equal([]string{"shop/web", "shop/web-debug"}))
		Expect(body).NotTo(ContainSubstring("audit-secret"))
	})

	It("follows pods: a pod scheduled to a node brings its pipelines, a pipeline removed leaves", func() {
		pod("shop", "db-2", "node-c", map[string]string{"app": "db"}, "")
		Eventually(func() []string {
			book.Notify()
			_, body, _ := get(tokens["node-c"], "", "")
			return names(body)
		}, 10*time.Second, 100*time.Millisecond).Should(Equal([]string{"shop/db"}))

		book.Remove(types.NamespacedName{Namespace: "shop", Name: "db"})
		_, body, _ := get(tokens["node-c"], "", "")
		Expect(names(body)).To(BeEmpty())
		Expect(body).NotTo(ContainSubstring("db-secret"))
	})
})

// report posts body as token's report; it returns the status code and the
// count of refused pipelines.
func report(token string, body []byte) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/report", strings.NewReader(string(body)))
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Refused-Pipelines")
}

// reportOf is a report of pipelines ("ns/name") each with lines read.
func reportOf(lines map[string]int64) []byte {
	r := control.Report{Revision: "r"}
	for k, n := range lines {
		ns, name, _ := strings.Cut(k, "/")
		r.Pipelines = append(r.Pipelines, control.PipelineReport{Namespace: ns, Name: name,
			Snapshot: capture.Snapshot{Running: true, SelectedContainers: 1, LinesTotal: n}})
	}
	b, err := json.Marshal(r)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return b
}

var _ = Describe("the agents' reports", func() {
	It("keeps each node's numbers of its own pipelines only, and sums a pipeline's over the nodes of its pods", func() {
		code, refused := report(tokens["node-a"], reportOf(map[string]int64{"shop/web": 100, "bank/all": 999, "shop/db": 999}))
		Expect(code).To(Equal(http.StatusNoContent))
		Expect(refused).To(Equal("2"), "node-a has no pod of bank/all or shop/db")
		code, refused = report(tokens["node-b"], reportOf(map[string]int64{"bank/all": 7}))
		Expect(code).To(Equal(http.StatusNoContent))
		Expect(refused).To(BeEmpty())

		w := &control.Workers{Book: book, Fleet: fleet, Pods: control.CachePods{Reader: podsRd}}
		s, ok := w.Snapshot(types.NamespacedName{Namespace: "bank", Name: "all"})
		Expect(ok).To(BeTrue())
		Expect(s.LinesTotal).To(Equal(int64(7)), "node-a's claim for bank/all was not summed")
		Expect(*s.Agents).To(Equal(capture.Agents{Nodes: 1, Reporting: 1, StaleAfter: time.Minute}))
		s, _ = w.Snapshot(types.NamespacedName{Namespace: "shop", Name: "web"})
		Expect(s.LinesTotal).To(Equal(int64(100)))
		Expect(s.Running).To(BeTrue())

		By("a node with selected pods and no report is missing")
		p := pod("bank", "ledger-2", "node-d", map[string]string{"app": "ledger"}, "")
		DeferCleanup(func() { Expect(c.Delete(ctx, p, client.GracePeriodSeconds(0))).To(Succeed()) })
		Eventually(func() []string {
			s, _ := w.Snapshot(types.NamespacedName{Namespace: "bank", Name: "all"})
			return s.Agents.Missing
		}, 10*time.Second, 100*time.Millisecond).Should(Equal([]string{"node-d"}))

		By("a deleted pipeline's numbers are forgotten, an unknown one has none")
		Expect(w.Delete(ctx, types.NamespacedName{Namespace: "bank", Name: "all"})).To(Succeed())
		_, ok = w.Snapshot(types.NamespacedName{Namespace: "bank", Name: "all"})
		Expect(ok).To(BeFalse())
		pipeline("bank", "all", nil, "bank-secret")
		s, _ = w.Snapshot(types.NamespacedName{Namespace: "bank", Name: "all"})
		Expect(s.LinesTotal).To(BeZero())
	})

	It("refuses reports without an agent's token, too large or not JSON", func() {
		for _, tok := range []string{"", "garbage"} {
			code, _ := report(tok, reportOf(map[string]int64{"shop/web": 1}))
			Expect(code).To(Equal(http.StatusUnauthorized))
		}
		code, _ := report(tokens["node-a"], []byte("{not json"))
		Expect(code).To(Equal(http.StatusBadRequest))
		huge := append([]byte(`{"revision":"`), []byte(strings.Repeat("x", control.MaxReportBytes))...)
		code, _ = report(tokens["node-a"], append(huge, '"', '}'))
		Expect(code).To(Equal(http.StatusRequestEntityTooLarge), strconv.Itoa(len(huge)))
	})
})
