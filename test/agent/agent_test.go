// Package agent_test runs the node agent's wiring (internal/agent) against
// the envtest API server: the operator's side of the link (agent/control)
// serves the node's configuration over TLS to the agent's real pod-bound
// token, the agent reads a pod's CRI files and ships them to a Loki
// receiver, and a restarted agent resumes from its journal.
package agent_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/log-capturer/log-capturer/agent/control"
	"github.com/log-capturer/log-capturer/agent/identity"
	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/internal/agent"
	"github.com/log-capturer/log-capturer/internal/operator"
	"github.com/log-capturer/log-capturer/test/builders"
	"github.com/log-capturer/log-capturer/test/envtestutil"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

func TestAgent(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Node agent suite")
}

const (
	agentNS = "log-capturer-system"
	agentSA = "log-capturer-agent"
	node    = "node-a"
)

var (
	ctx     context.Context
	cfg     *rest.Config
	c       client.Client
	book    *control.Book
	fleet   *control.Fleet
	opPods  client.Reader
	opSrv   *httptest.Server
	caPEM   []byte
	loki    *lokireceiver.Receiver
	lokiSrv *httptest.Server
	writes  atomic.Int64 // the agent's API requests other than reads
	testEnv *envtest.Environment
	// probes is where the next agent serves its probes ("" for none),
	// metricsAt its metrics.
	probes, metricsAt string
	// agentPod is the next agent's own pod (none: it never looks for its
	// DaemonSet as it stops).
	agentPod types.NamespacedName
)

var _ = BeforeSuite(func() {
	ctx = context.Background()
	env, restCfg, cl, err := envtestutil.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(env.Stop)
	testEnv = env
	cfg, c = restCfg, cl
	for _, ns := range []string{agentNS, "shop"} {
		Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	}
	Expect(c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: agentNS, Name: agentSA}})).To(Succeed())
	for _, n := range []string{node, "node-b"} {
		Expect(c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}})).To(Succeed())
	}

	// The operator's side: a pod cache indexed by node, the Book, the
	// handler behind TLS.
	pods, err := cache.New(cfg, cache.Options{Scheme: c.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	Expect(control.IndexPodsByNode(ctx, pods)).To(Succeed())
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = pods.Start(cctx) })
	DeferCleanup(func() { cancel(); wg.Wait() })
	Expect(pods.WaitForCacheSync(cctx)).To(BeTrue())
	book, fleet, opPods = control.NewBook(), &control.Fleet{StaleAfter: 3 * time.Second}, pods
	opSrv = httptest.NewTLSServer(&control.Handler{Book: book, Pods: control.CachePods{Reader: pods},
		Verifier: identity.NewVerifier(c, agentNS, agentSA, time.Minute), Fleet: fleet, MaxWait: 2 * time.Second})
	DeferCleanup(opSrv.Close)
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: opSrv.Certificate().Raw})

	loki = lokireceiver.New()
	lokiSrv = httptest.NewServer(loki)
	DeferCleanup(func() { loki.Close(); lokiSrv.Close() })
})

// agentToken writes a token of an agent pod on node into a file.
func agentToken(dir string) string {
	path, _ := agentTokenOn(dir, node)
	return path
}

// agentTokenOn writes a token of an agent pod on node n into a file and
// returns the pod too.
func agentTokenOn(dir, n string) (string, *corev1.Pod) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: agentNS, GenerateName: "agent-"},
		Spec: corev1.PodSpec{NodeName: n, ServiceAccountName: agentSA, Containers: []corev1.Container{{Name: "agent", Image: "x"}}}}
	return podToken(dir, p), p
}

// podToken creates the agent pod p and writes a token bound to it, for the
// agents' audience, into a file in dir; it returns the file's path.
func podToken(dir string, p *corev1.Pod) string {
	ExpectWithOffset(2, c.Create(ctx, p)).To(Succeed())
	cs, err := kubernetes.NewForConfig(cfg)
	ExpectWithOffset(2, err).NotTo(HaveOccurred())
	tr, err := cs.CoreV1().ServiceAccounts(agentNS).CreateToken(ctx, agentSA, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{identity.Audience}, ExpirationSeconds: ptr.To[int64](3600),
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.UID}}}, metav1.CreateOptions{})
	ExpectWithOffset(2, err).NotTo(HaveOccurred())
	path := filepath.Join(dir, "token")
	ExpectWithOffset(2, os.WriteFile(path, []byte(tr.Status.Token), 0o600)).To(Succeed())
	return path
}

// countingConfig is cfg with the agent's non-read requests counted. The
// TokenReviews and SubjectAccessReviews of its metrics endpoint are
// questions, not writes: the API server stores nothing of them.
func countingConfig() *rest.Config {
	rc := rest.CopyConfig(cfg)
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			review := strings.HasSuffix(r.URL.Path, "/tokenreviews") || strings.HasSuffix(r.URL.Path, "/subjectaccessreviews")
			if r.Method != http.MethodGet && !review {
				writes.Add(1)
			}
			return rt.RoundTrip(r)
		})
	})
	return rc
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// writeLines appends CRI lines n0..n-1 to a container's log.
func writeLines(dir string, from, to int) {
	writePodLines(dir, "web", from, to)
}

// writePodLines appends CRI lines n0..n-1 of pod to a container's log.
func writePodLines(dir, pod string, from, to int) {
	ExpectWithOffset(1, os.MkdirAll(dir, 0o755)).To(Succeed())
	f, err := os.OpenFile(filepath.Join(dir, "0.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	defer f.Close()
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "%s stdout F line %06d of the %s pod\n", t0.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), i, pod)
	}
	_, err = f.WriteString(b.String())
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
}

// runAgent starts the agent and returns a function that stops it and
// returns Run's error.
func runAgent(podsDir, journal, token string) func() error {
	return runAgentOf(opSrv.URL, caPEM, podsDir, journal, token)
}

// runAgentOf starts an agent of the operator at url, whose certificate ca
// signed.
func runAgentOf(url string, ca []byte, podsDir, journal, token string) func() error {
	return runAgentOn(node, url, ca, podsDir, journal, token)
}

// runAgentOn is runAgentOf for an agent on node n.
func runAgentOn(n, url string, ca []byte, podsDir, journal, token string) func() error {
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	hp, ma, pod := probes, metricsAt, agentPod
	go func() {
		done <- agent.Run(actx, agent.Options{RestConfig: countingConfig(), Node: n, PodsDir: podsDir, JournalDir: journal,
			Holder: "agent-test", Pod: pod, OperatorURL: url, OperatorCA: ca, TokenFile: token, Wait: time.Second, ReportPeriod: 200 * time.Millisecond, HealthProbeBindAddress: hp,
			MetricsBindAddress: ma, SamplePeriod: time.Second,
			AllowLoopbackEgress: true, Log: logr.Discard()})
	}()
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return fmt.Errorf("the agent did not stop within 30s")
		}
	}
}

// podOnNode creates pod name of ns with labels on the suite's node, one
// container "main", deleted when the spec ends.
func podOnNode(ns, name string, labels map[string]string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "main", Image: "x"}}}}
	ExpectWithOffset(1, c.Create(ctx, p)).To(Succeed())
	DeferCleanup(func() { _ = c.Delete(ctx, p) })
	return p
}

// freeAddr is a loopback address nothing listens on now.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().String()
}

// runOperator runs the operator in this process in capture mode mode, its
// agent endpoint on a free address with its self-managed TLS for the
// suite's agent identity (more adjusts the options). It returns the
// endpoint's URL, the authority the operator published in the agents'
// namespace, and a function that stops it and returns Run's error, called
// when the spec ends too.
func runOperator(tmp, mode string, more func(*operator.Options)) (url string, ca []byte, stop func() error) {
	addr := freeAddr()
	o := operator.Options{RestConfig: cfg, MetricsBindAddress: "0", HealthProbeBindAddr: "0",
		FileSinkRoot: filepath.Join(tmp, "files"), AllowLoopbackEgress: true, HealthSamplePeriod: time.Second,
		Capture: mode, AgentBindAddress: addr, AgentCertHosts: []string{"127.0.0.1"},
		AgentServiceAccount: agentNS + "/" + agentSA, AgentStaleAfter: 3 * time.Second}
	if more != nil {
		more(&o)
	}
	opCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- operator.Run(opCtx, o) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = fmt.Errorf("the operator did not stop within 30s")
			}
		})
		return err
	}
	DeferCleanup(func() { Expect(stop()).To(Succeed()) })
	// Without --agent-cert-dir the operator issues its endpoint's
	// certificate and publishes the authority in the agents' namespace.
	EventuallyWithOffset(1, func(g Gomega) {
		cm := &corev1.ConfigMap{}
		g.Expect(c.Get(ctx, client.ObjectKey{Namespace: agentNS, Name: operator.AgentCAConfigMap}, cm)).To(Succeed())
		ca = []byte(cm.Data["ca.crt"])
	}, 30*time.Second, 200*time.Millisecond).Should(Succeed())
	return "https://" + addr, ca, stop
}

// lines returns the sequence numbers Loki received, in arrival order.
func lines() []int {
	var out []int
	for _, e := range loki.Entries() {
		var n int
		if _, err := fmt.Sscanf(e.Line, "line %d of the web pod", &n); err == nil {
			out = append(out, n)
		}
	}
	return out
}

var _ = Describe("the node agent", func() {
	It("ships its node's pods from their files with the operator's configuration, resumes from its journal, and writes nothing to the API server", func() {
		tmp := GinkgoT().TempDir()
		podsDir, journal := filepath.Join(tmp, "pods"), filepath.Join(tmp, "journal")
		token := agentToken(tmp)
		web := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "main", Image: "x"}}}}
		Expect(c.Create(ctx, web)).To(Succeed())
		other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-2", Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{NodeName: "node-b", Containers: []corev1.Container{{Name: "main", Image: "x"}}}}
		Expect(c.Create(ctx, other)).To(Succeed())
		webDir := filepath.Join(podsDir, "shop_web-1_"+string(web.UID), "main")
		writeLines(webDir, 0, 3000)
		// A directory of a pod of another node under the same root is
		// never read: the agent reads its own node's pods.
		writeLines(filepath.Join(podsDir, "shop_web-2_"+string(other.UID), "main"), 0, 10)

		baseline := runtime.NumGoroutine()
		book.Apply(types.NamespacedName{Namespace: "shop", Name: "web"}, capture.PipelineConfig{
			Namespace: "shop", Name: "web", UID: "web-uid", RotationInterval: 2 * time.Second, MaxStreams: 5, StartFromBeginning: true,
			PositionsInterval: 200 * time.Millisecond,
			Selector:          &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Sinks: []capture.SinkConfig{{Name: "loki", Kind: capture.SinkLoki, BatchMaxBytes: 64 << 10, BatchMaxWait: 50 * time.Millisecond,
				BufferMaxBytes: 1 << 20, WhenFull: "Block", MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
				Loki: &capture.LokiConfig{URL: lokiSrv.URL, MetadataLabels: []string{"namespace", "pod", "container"}}}},
		})
		probes = freeAddr()
		probesAt := probes
		stop := runAgent(podsDir, journal, token)
		probes = ""
		Eventually(func() int { return len(lines()) }, 30*time.Second, 100*time.Millisecond).Should(Equal(3000))
		for path, want := range map[string]string{"/healthz": "ok", "/readyz": `running; 1 pipelines (revision "`} {
			resp, err := http.Get("http://" + probesAt + path)
			Expect(err).NotTo(HaveOccurred())
			b, _ := io.ReadAll(resp.Body)
			Expect(resp.Body.Close()).To(Succeed())
			Expect(resp.StatusCode).To(Equal(http.StatusOK), path)
			Expect(string(b)).To(HavePrefix(want), path)
		}

		By("the operator sums the agent's report: its node reports, the other node's agent is missing")
		key := types.NamespacedName{Namespace: "shop", Name: "web"}
		workers := &control.Workers{Book: book, Fleet: fleet, Pods: control.CachePods{Reader: opPods}}
		var snap capture.Snapshot
		Eventually(func() int64 {
			snap, _ = workers.Snapshot(key)
			if len(snap.Sinks) == 0 {
				return 0
			}
			return snap.Sinks[0].SentLines
		}, 10*time.Second, 100*time.Millisecond).Should(Equal(int64(3000)))
		Expect(snap.LinesTotal).To(Equal(int64(3000)))
		Expect(snap.FileContainers).To(Equal(1))
		Expect(snap.Running).To(BeTrue())
		Expect(*snap.Agents).To(Equal(capture.Agents{Nodes: 2, Reporting: 1, Missing: []string{"node-b"}, StaleAfter: 3 * time.Second}))
		GinkgoWriter.Printf("agent report: %d lines read, %d sent, %d goroutines, %d FDs on %s; agents %+v\n",
			snap.LinesTotal, snap.Sinks[0].SentLines, snap.Goroutines, snap.OpenFDs, node, *snap.Agents)

		By("stopping the agent, writing on, starting a new one on the same journal")
		Expect(stop()).To(Succeed())
		Eventually(func() []string { s, _ := workers.Snapshot(key); return s.Agents.Stale }, 10*time.Second, 200*time.Millisecond).
			Should(Equal([]string{node}), "a stopped agent is stale after the bound")
		writeLines(webDir, 3000, 5000)
		stop = runAgent(podsDir, journal, token)
		Eventually(func() int { return len(lines()) }, 30*time.Second, 100*time.Millisecond).Should(Equal(5000))
		Consistently(func() int { return len(lines()) }, time.Second, 100*time.Millisecond).Should(Equal(5000))
		got := lines()
		for i, n := range got {
			Expect(n).To(Equal(i), "line %d arrived as the %d-th", n, i)
		}
		for _, e := range loki.Entries() {
			Expect(e.Labels).To(HaveKeyWithValue("pod", "web-1"))
		}

		By("a pipeline removed by the operator stops on the agent")
		book.Remove(key)
		// The agent's report leaves the pipeline out once its link applied
		// the removal; lines written after that are not the pipeline's.
		Eventually(func() int64 { return fleet.Snapshot(key, []string{node}).LinesTotal }, 10*time.Second, 100*time.Millisecond).Should(BeZero())
		writeLines(webDir, 5000, 5100)
		Consistently(func() int { return len(lines()) }, 3*time.Second, 200*time.Millisecond).Should(Equal(5000))
		Expect(stop()).To(Succeed())
		Expect(writes.Load()).To(BeZero(), "the agent wrote to the API server")
		Eventually(runtime.NumGoroutine, 10*time.Second, 100*time.Millisecond).Should(BeNumerically("<=", baseline))
		GinkgoWriter.Printf("agent: %d lines once and in order across a restart on the journal, 0 API writes, goroutines %d → %d\n",
			len(got), baseline, runtime.NumGoroutine())
	})

	It("runs under the operator with --capture=agent and its self-managed TLS: a LogPipeline's lines shipped from its node's files, its status from the agent's reports", func() {
		tmp := GinkgoT().TempDir()
		podsDir, journal := filepath.Join(tmp, "pods"), filepath.Join(tmp, "journal")
		receiver := lokireceiver.New()
		rsrv := httptest.NewServer(receiver)
		DeferCleanup(func() { receiver.Close(); rsrv.Close() })
		url, ca, stopOperator := runOperator(tmp, operator.CaptureAgent, nil)

		orders := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders-1", Labels: map[string]string{"app": "orders"}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "main", Image: "x"}}}}
		Expect(c.Create(ctx, orders)).To(Succeed())
		writePodLines(filepath.Join(podsDir, "shop_orders-1_"+string(orders.UID), "main"), "orders", 0, 2000)
		Expect(c.Create(ctx, builders.Sink("shop", "orders-loki").Loki(rsrv.URL).Build())).To(Succeed())
		Expect(c.Create(ctx, builders.Pipeline("shop", "orders", "orders-loki").WithSelector(map[string]string{"app": "orders"}).
			With(func(p *logsv1alpha1.LogPipeline) { p.Spec.StartAt = logsv1alpha1.StartAtBeginning }).Build())).To(Succeed())

		stop := runAgentOf(url, ca, podsDir, journal, agentToken(tmp))
		Eventually(func() int { return len(receiver.Entries()) }, 60*time.Second, 200*time.Millisecond).Should(Equal(2000))
		key := client.ObjectKey{Namespace: "shop", Name: "orders"}
		lp := &logsv1alpha1.LogPipeline{}
		Eventually(func(g Gomega) {
			g.Expect(c.Get(ctx, key, lp)).To(Succeed())
			w := lp.Status.Workers
			g.Expect(w).NotTo(BeNil())
			g.Expect(w.Agents).To(Equal(&logsv1alpha1.AgentsStatus{Nodes: 1, Reporting: 1}))
			g.Expect(w.FileContainers).To(Equal(int32(1)))
			g.Expect(w.LinesTotal).To(Equal(int64(2000)))
			g.Expect(meta.IsStatusConditionTrue(lp.Status.Conditions, logsv1alpha1.ConditionReady)).To(BeTrue(), "%v", lp.Status.Conditions)
		}, 60*time.Second, 500*time.Millisecond).Should(Succeed())
		GinkgoWriter.Printf("operator in agent mode: %d lines delivered; status.workers: lines %d, fileContainers %d, agents %+v\n",
			len(receiver.Entries()), lp.Status.Workers.LinesTotal, lp.Status.Workers.FileContainers, *lp.Status.Workers.Agents)
		// The SinkTarget's delivery time is the agents' too (refreshed every 30s).
		st := &logsv1alpha1.SinkTarget{}
		Eventually(func(g Gomega) {
			g.Expect(c.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "orders-loki"}, st)).To(Succeed())
			g.Expect(st.Status.LastSuccessfulDelivery).NotTo(BeNil())
		}, 45*time.Second, 500*time.Millisecond).Should(Succeed())

		By("a second pipeline deleted: the agent deletes its positions from the node's journal")
		Expect(c.Create(ctx, builders.Pipeline("shop", "orders-copy", "orders-loki").WithSelector(map[string]string{"app": "orders"}).
			With(func(p *logsv1alpha1.LogPipeline) { p.Spec.StartAt = logsv1alpha1.StartAtBeginning }).Build())).To(Succeed())
		Eventually(func() int { return len(receiver.Entries()) }, 30*time.Second, 200*time.Millisecond).Should(Equal(4000), "the copy delivers its own 2000 lines")
		posFiles := func() []string {
			m, _ := filepath.Glob(filepath.Join(journal, "*.pos"))
			return m
		}
		Eventually(posFiles, 30*time.Second, 200*time.Millisecond).Should(HaveLen(2))
		Expect(c.Delete(ctx, &logsv1alpha1.LogPipeline{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders-copy"}})).To(Succeed())
		Eventually(posFiles, 30*time.Second, 200*time.Millisecond).Should(HaveLen(1))

		By("the agent stopped: its node is named stale, WorkersHealthy says AgentsMissing")
		Expect(stop()).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(c.Get(ctx, key, lp)).To(Succeed())
			g.Expect(lp.Status.Workers.Agents).To(Equal(&logsv1alpha1.AgentsStatus{Nodes: 1, StaleNodes: []string{node}}))
			cond := meta.FindStatusCondition(lp.Status.Conditions, logsv1alpha1.ConditionWorkersHealthy)
			g.Expect(cond).NotTo(BeNil())
			g.Expect(cond.Reason).To(Equal(logsv1alpha1.ReasonAgentsMissing))
			g.Expect(cond.Message).To(ContainSubstring("1 last reported more than 3s ago (node-a)"))
		}, 30*time.Second, 500*time.Millisecond).Should(Succeed())

		Expect(writes.Load()).To(BeZero(), "the agents wrote to the API server")
		Expect(stopOperator()).To(Succeed())
	})

	It("refuses to start without what it needs", func() {
		err := agent.Run(ctx, agent.Options{Node: node})
		Expect(err).To(MatchError(ContainSubstring("the agent needs")))
	})
})
