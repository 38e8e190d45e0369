package agent_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/log-capturer/log-capturer/agent/control"
	"github.com/log-capturer/log-capturer/agent/identity"
	"github.com/log-capturer/log-capturer/agent/link"
	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/internal/operator"
	"github.com/log-capturer/log-capturer/test/builders"
	"github.com/log-capturer/log-capturer/test/envtestutil"
)

// simAgent is a node agent without an engine: the real link (Follower and
// Reporter, real connections and pod-bound tokens) in front of workers
// that record what they were given and report steady numbers for it.
type simAgent struct {
	node  string
	start time.Time
	mu    sync.Mutex
	cfgs  map[types.NamespacedName]capture.PipelineConfig
	// secrets are the credentials the agent was ever sent.
	secrets map[string]bool
}

func (a *simAgent) Apply(_ context.Context, key types.NamespacedName, cfg capture.PipelineConfig) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cfgs[key] = cfg
	for _, s := range cfg.Sinks {
		if s.Loki != nil {
			a.secrets[s.Loki.Credentials.BearerToken] = true
		}
	}
	return nil
}

func (a *simAgent) Remove(_ context.Context, key types.NamespacedName) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.cfgs, key)
	return nil
}

// report is a steady pipeline's numbers: 100 lines/s read and delivered
// by one container since the agent started, over a full health window.
func (a *simAgent) report() control.Report {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	lines := int64(now.Sub(a.start).Seconds()*100) + 60000
	r := control.Report{Revision: "sim"}
	for k, cfg := range a.cfgs {
		s := capture.Snapshot{Running: true, SelectedContainers: 1, ActiveStreams: 1, OpenStreams: 1, FileContainers: 1,
			Goroutines: 3, ProcessGoroutines: 60, OpenFDs: 25, LinesTotal: lines, BytesTotal: lines * 100,
			Positions: capture.PositionsStatus{Reason: capture.PositionsStored, Message: "Positions stored in the node journal."},
			Window: capture.Window{Samples: 40, Covered: 10 * time.Minute, GoroutineGrowthPerMinute: 0, FDGrowthPer10Minutes: 0,
				LinesInWindow: 60000, LinesPerSecond: 100}}
		for _, sk := range cfg.Sinks {
			s.Sinks = append(s.Sinks, capture.SinkStats{Name: sk.Name, SentLines: lines, SentBytes: lines * 100, LastSuccess: now, QueueMaxBytes: 1 << 20})
			s.Window.Sinks = append(s.Window.Sinks, capture.SinkWindow{Name: sk.Name, Sent: 60000})
		}
		r.Pipelines = append(r.Pipelines, control.PipelineReport{Namespace: k.Namespace, Name: k.Name, Snapshot: s})
	}
	return r
}

var _ = Describe("a fleet of 100 agents", Label("fleet"), func() {
	It("is served and summed by one operator: each node gets its own, status writes stay at the single-process level, a cut-off agent is named", func() {
		const (
			agents    = 100
			pipelines = 10
			ns        = "fleet"
		)
		tmp := GinkgoT().TempDir()
		certDir := filepath.Join(tmp, "cert")
		Expect(os.MkdirAll(certDir, 0o700)).To(Succeed())
		ca, err := envtestutil.ServingCert(certDir)
		Expect(err).NotTo(HaveOccurred())
		addr := freeAddr()
		Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		cs, err := kubernetes.NewForConfig(cfg)
		Expect(err).NotTo(HaveOccurred())

		// Pipeline p-j selects app=p-j; pod i runs on node sim-i with app
		// p-(i%10), so every pipeline has pods on 10 nodes. Each pipeline's
		// sink has its own bearer token.
		for j := range pipelines {
			name := fmt.Sprintf("p-%d", j)
			Expect(c.Create(ctx, builders.Secret(ns, name, map[string]string{"token": "secret-of-" + name}))).To(Succeed())
			Expect(c.Create(ctx, builders.Sink(ns, name).Loki(lokiSrv.URL).WithBearerToken(name, "token").Build())).To(Succeed())
			Expect(c.Create(ctx, builders.Pipeline(ns, name, name).WithSelector(map[string]string{"app": name}).Build())).To(Succeed())
		}
		sims := make([]*simAgent, agents)
		tokens := make([]string, agents)
		for i := range agents {
			node := fmt.Sprintf("sim-%03d", i)
			Expect(c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}})).To(Succeed())
			Expect(c.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "work-" + node, Labels: map[string]string{"app": fmt.Sprintf("p-%d", i%pipelines)}},
				Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "main", Image: "x"}}}})).To(Succeed())
			ap := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: agentNS, Name: "agent-" + node},
				Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: agentSA, Containers: []corev1.Container{{Name: "agent", Image: "x"}}}}
			Expect(c.Create(ctx, ap)).To(Succeed())
			tokens[i], err = envtestutil.PodToken(ctx, cs, agentNS, agentSA, ap, identity.Audience)
			Expect(err).NotTo(HaveOccurred())
			sims[i] = &simAgent{node: node, start: time.Now(), cfgs: map[types.NamespacedName]capture.PipelineConfig{}, secrets: map[string]bool{}}
		}

		// The operator, its status writes counted.
		var statusWrites atomic.Int64
		opCfg := rest.CopyConfig(cfg)
		opCfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
			return roundTripper(func(r *http.Request) (*http.Response, error) {
				if r.Method != http.MethodGet && strings.Contains(r.URL.Path, "/logpipelines/") && strings.HasSuffix(r.URL.Path, "/status") {
					statusWrites.Add(1)
				}
				return rt.RoundTrip(r)
			})
		})
		baseline := runtime.NumGoroutine()
		opCtx, stopOperator := context.WithCancel(ctx)
		opDone := make(chan error, 1)
		go func() {
			opDone <- operator.Run(opCtx, operator.Options{RestConfig: opCfg, MetricsBindAddress: "0", HealthProbeBindAddr: "0",
				FileSinkRoot: filepath.Join(tmp, "files"), HealthSamplePeriod: time.Second, AllowLoopbackEgress: true,
				Capture: operator.CaptureAgent, AgentBindAddress: addr, AgentCertDir: certDir,
				AgentServiceAccount: agentNS + "/" + agentSA, AgentStaleAfter: 3 * time.Second})
		}()

		// 100 agents: a Follower and a Reporter each, every one with its
		// own connections (its own transport) and token.
		pool := x509.NewCertPool()
		Expect(pool.AppendCertsFromPEM(ca)).To(BeTrue())
		type running struct {
			stop   context.CancelFunc
			done   sync.WaitGroup
			client *http.Client
		}
		runs := make([]*running, agents)
		for i, a := range sims {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true}
			rn := &running{client: &http.Client{Transport: tr}}
			actx, cancel := context.WithCancel(ctx)
			rn.stop = cancel
			tok := tokens[i]
			token := func() (string, error) { return tok, nil }
			f := &link.Follower{URL: "https://" + addr, Client: rn.client, Token: token, Workers: a, Wait: 20 * time.Second,
				MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
			rep := &link.Reporter{URL: "https://" + addr, Client: rn.client, Token: token, Report: a.report, Period: time.Second}
			rn.done.Go(func() { _ = f.Run(actx) })
			rn.done.Go(func() { _ = rep.Run(actx) })
			runs[i] = rn
		}
		stopAgent := func(i int) {
			runs[i].stop()
			runs[i].done.Wait()
			runs[i].client.CloseIdleConnections()
		}
		defer func() {
			for i := range runs {
				stopAgent(i)
			}
		}()

		lp := func(j int) *logsv1alpha1.LogPipeline {
			p := &logsv1alpha1.LogPipeline{}
			ExpectWithOffset(1, c.Get(ctx, client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("p-%d", j)}, p)).To(Succeed())
			return p
		}
		start := time.Now()
		Eventually(func(g Gomega) {
			for j := range pipelines {
				p := lp(j)
				g.Expect(p.Status.Workers).NotTo(BeNil(), "p-%d", j)
				g.Expect(p.Status.Workers.Agents).To(Equal(&logsv1alpha1.AgentsStatus{Nodes: 10, Reporting: 10}), "p-%d", j)
				g.Expect(p.Status.Workers.SelectedContainers).To(Equal(int32(10)), "p-%d", j)
				g.Expect(meta.IsStatusConditionTrue(p.Status.Conditions, logsv1alpha1.ConditionReady)).To(BeTrue(), "p-%d: %v", j, p.Status.Conditions)
			}
		}, 90*time.Second, time.Second).Should(Succeed())
		GinkgoWriter.Printf("fleet: %d agents, %d pipelines of 10 nodes each all Ready with agents {nodes 10, reporting 10} after %s\n",
			agents, pipelines, time.Since(start).Round(100*time.Millisecond))

		By("each agent got its own node's pipeline and only its credentials")
		for i, a := range sims {
			a.mu.Lock()
			want := fmt.Sprintf("p-%d", i%pipelines)
			Expect(a.cfgs).To(HaveLen(1), a.node)
			Expect(a.cfgs).To(HaveKey(types.NamespacedName{Namespace: ns, Name: want}), a.node)
			Expect(a.secrets).To(Equal(map[string]bool{"secret-of-" + want: true}), a.node)
			a.mu.Unlock()
		}
		By("an agent presenting node sim-000's identity is refused node sim-001's configuration")
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/v1/config?node=sim-001", nil)
		Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Authorization", "Bearer "+tokens[0])
		resp, err := runs[0].client.Do(req)
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.StatusCode).To(Equal(http.StatusForbidden))
		Expect(resp.Body.Close()).To(Succeed())

		By("in steady state the operator writes status as one process does: totals at most once a minute per pipeline")
		before := statusWrites.Load()
		const steady = 70 * time.Second
		time.Sleep(steady)
		writes := statusWrites.Load() - before
		perPipelinePerMinute := float64(writes) / pipelines / steady.Minutes()
		GinkgoWriter.Printf("fleet: %d status writes in %s of steady state for %d pipelines (%.2f per pipeline per minute); 100 agents, 1 report/s each\n",
			writes, steady, pipelines, perPipelinePerMinute)
		Expect(writes).To(BeNumerically("<=", 2*pipelines), "totals refresh once a minute; a steady pipeline writes no more")

		By("an agent cut off is named stale on its pipeline within the bound")
		cut := time.Now()
		stopAgent(7)
		Eventually(func(g Gomega) {
			p := lp(7)
			g.Expect(p.Status.Workers.Agents).To(Equal(&logsv1alpha1.AgentsStatus{Nodes: 10, Reporting: 9, StaleNodes: []string{"sim-007"}}))
			cond := meta.FindStatusCondition(p.Status.Conditions, logsv1alpha1.ConditionWorkersHealthy)
			g.Expect(cond).NotTo(BeNil())
			g.Expect(cond.Reason).To(Equal(logsv1alpha1.ReasonAgentsMissing))
			g.Expect(cond.Message).To(ContainSubstring("(sim-007)"))
		}, 20*time.Second, 200*time.Millisecond).Should(Succeed())
		GinkgoWriter.Printf("fleet: agent of sim-007 cut off, named stale on p-7 after %s (bound 3s, sample period 1s)\n", time.Since(cut).Round(100*time.Millisecond))
		for j := range pipelines {
			if j == 7 {
				continue
			}
			Expect(lp(j).Status.Workers.Agents.StaleNodes).To(BeEmpty(), "p-%d", j)
		}
		Expect(writes).NotTo(BeZero(), "the status writes were counted")

		By("a deleted node's last report is forgotten: its agent is missing, not stale")
		Expect(c.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "sim-007"}})).To(Succeed())
		Eventually(func() *logsv1alpha1.AgentsStatus { return lp(7).Status.Workers.Agents }, 20*time.Second, 200*time.Millisecond).
			Should(Equal(&logsv1alpha1.AgentsStatus{Nodes: 10, Reporting: 9, MissingNodes: []string{"sim-007"}}))

		for i := range runs {
			stopAgent(i)
		}
		stopOperator()
		Eventually(opDone, 30*time.Second).Should(Receive(BeNil()))
		Eventually(runtime.NumGoroutine, 20*time.Second, 200*time.Millisecond).Should(BeNumerically("<=", baseline+5))
		GinkgoWriter.Printf("fleet: goroutines %d before the operator and agents, %d after\n", baseline, runtime.NumGoroutine())
	})
})
