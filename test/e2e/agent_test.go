//go:build e2e

package e2e_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/test/builders"
)

const (
	// agentNS is the node agents' namespace of dist/install.yaml.
	agentNS = "log-capturer-agents"
	// agentLogs is the namespace of the writers the agent reads.
	agentLogs = "e2e-agent"
)

// agentPod is the running node agent, nil while there is none.
func agentPod() *corev1.Pod {
	pods := &corev1.PodList{}
	ExpectWithOffset(1, k8sClient.List(ctx, pods, client.InNamespace(agentNS),
		client.MatchingLabels{"app.kubernetes.io/component": "agent"})).To(Succeed())
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			return p
		}
	}
	return nil
}

// podsIn counts the pods of namespace with labels, terminating ones too.
func podsIn(namespace string, labels map[string]string) int {
	pods := &corev1.PodList{}
	ExpectWithOffset(1, k8sClient.List(ctx, pods, client.InNamespace(namespace), client.MatchingLabels(labels))).To(Succeed())
	return len(pods.Items)
}

// agentPipeline is the LogPipeline the agent runs.
func agentPipeline() *logsv1alpha1.LogPipeline {
	p := &logsv1alpha1.LogPipeline{}
	ExpectWithOffset(1, k8sClient.Get(ctx, client.ObjectKey{Namespace: agentLogs, Name: "writers"}, p)).To(Succeed())
	return p
}

func agentCondition(t string) metav1.Condition {
	if c := meta.FindStatusCondition(agentPipeline().Status.Conditions, t); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// podsLog reads the API server's own metrics: how many pods/log requests it
// completed, and how many it serves now (they are long-running requests,
// counted in the total when they end).
func podsLog() (completed, inFlight int) {
	out := run("get", "--raw", "/metrics")
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.Contains(l, `resource="pods"`) || !strings.Contains(l, `subresource="log"`) {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(l, "apiserver_request_total{"):
			completed += int(v)
		case strings.HasPrefix(l, "apiserver_longrunning_requests{"):
			inFlight += int(v)
		}
	}
	return completed, inFlight
}

// switchToAgents applies dist/install.yaml over the running install:
// the operator restarts in auto capture mode and the DaemonSet puts an
// agent on the node, which takes the running pipeline's containers over at
// the positions the API engine stored: nothing of them is sent again.
func switchToAgents() {
	before := len(receivedLines(ns))
	run("apply", "--server-side", "-f", os.Getenv("E2E_INSTALL_AGENT"))
	// This node has no cluster DNS: the agents resolve the operator
	// Service's name through hostAliases, so that the URL and the name in
	// the operator's certificate stay those of the install.
	patchAgentHostAliases()
	run("-n", operatorNS, "rollout", "status", "deployment/log-capturer", "--timeout=120s")
	run("-n", agentNS, "rollout", "status", "daemonset/log-capturer-agent", "--timeout=180s")
	// The API-mode operator is gone with its streams.
	Eventually(func() int { return podsIn(operatorNS, map[string]string{"app.kubernetes.io/component": "operator"}) }, 90*time.Second, time.Second).
		Should(Equal(1))

	p := agentPod()
	Expect(p).NotTo(BeNil())
	Expect(p.Spec.ServiceAccountName).To(Equal("log-capturer-agent"))
	c := p.Spec.Containers[0].SecurityContext
	Expect(c.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
	Expect(c.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
	Expect(c.Capabilities.Drop).To(ContainElement(corev1.Capability("ALL")))
	Expect(c.Capabilities.Add).To(BeEmpty())
	for _, m := range p.Spec.Containers[0].VolumeMounts {
		if m.MountPath == "/var/log/pods" {
			Expect(m.ReadOnly).To(BeTrue(), "the kubelet's files are mounted read-only")
		}
	}

	By("the running pipeline's containers handed to the agent at their stored positions")
	Eventually(func() bool {
		w := workers()
		return w.SelectedContainers > 0 && w.FileContainers == w.SelectedContainers
	},
		2*time.Minute, time.Second).Should(BeTrue(), "every container of the pipeline read by the agent")
	Consistently(func() int { return len(receivedLines(ns)) }, 15*time.Second, time.Second).Should(Equal(before),
		"the agent sent nothing of what the API engine had delivered")
	GinkgoWriter.Printf("switched to the agent: %d containers of %s/writers read from files, %d lines before and after\n",
		workers().FileContainers, ns, before)
}

// receivedLines is what Loki received of namespace.
func receivedLines(namespace string) []string {
	var out []string
	for _, e := range loki.Entries() {
		if e.Labels["namespace"] == namespace {
			out = append(out, e.Line)
		}
	}
	return out
}

// agentRotatedFiles counts the kubelet's rotated logs of the agent's writers.
func agentRotatedFiles() int {
	files, _ := filepath.Glob("/var/log/pods/" + agentLogs + "_*/logger/*.log.*")
	return len(files)
}

// agentCapture runs writers that the kubelet rotates many times, read by
// the node agent from its files, and takes the agent away twice while they
// write: its pod deleted, then a rolling update of the DaemonSet.
func agentCapture() {
	Eventually(func() int { _, n := podsLog(); return n }, time.Minute, time.Second).Should(BeZero(),
		"no pods/log stream is served once the operator runs in agent mode")
	before, _ := podsLog()

	Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentLogs}})).To(Succeed())
	Expect(k8sClient.Create(ctx, &logsv1alpha1.CapturePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-agent-node-receiver"},
		Spec: logsv1alpha1.CapturePolicySpec{
			NamespaceSelector: *logsv1alpha1.SelectorFromMap(map[string]string{"kubernetes.io/metadata.name": agentLogs}),
			DestinationCIDRs:  []string{os.Getenv("E2E_NODE_IP") + "/32"},
		},
	})).To(Succeed())
	Expect(k8sClient.Create(ctx, builders.Sink(agentLogs, "loki").Loki(lokiURL).With(func(s *logsv1alpha1.SinkTarget) {
		s.Spec.Batch.MaxWait = metav1.Duration{Duration: 200 * time.Millisecond}
	}).Build())).To(Succeed())
	Expect(k8sClient.Create(ctx, builders.Pipeline(agentLogs, "writers", "loki").WithSelector(map[string]string{"app": "writer"}).
		With(func(p *logsv1alpha1.LogPipeline) {
			p.Spec.StartAt = logsv1alpha1.StartAtBeginning
			p.Spec.Positions.WriteInterval = metav1.Duration{Duration: 2 * time.Second}
			p.Spec.Health.Window = metav1.Duration{Duration: time.Minute}
		}).Build())).To(Succeed())
	// ~270 bytes a line at 400 lines/s: a 1Mi log rotates every ~10 s,
	// for the two minutes each writer runs.
	w := writer("rotating", 2, 48000, 400)
	w.Namespace = agentLogs
	Expect(k8sClient.Create(ctx, w)).To(Succeed())

	Eventually(func() string { return string(agentCondition(logsv1alpha1.ConditionReady).Status) }, 90*time.Second, time.Second).
		Should(Equal("True"))
	Eventually(func() int { return len(receivedIn(agentLogs)) }, 60*time.Second, time.Second).Should(Equal(2))

	By("deleting the agent pod while lines flow")
	time.Sleep(10 * time.Second)
	old := agentPod()
	Expect(old).NotTo(BeNil())
	Expect(k8sClient.Delete(ctx, old)).To(Succeed())
	Eventually(func() bool { p := agentPod(); return p != nil && p.UID != old.UID && podReady(p) }, 90*time.Second, time.Second).
		Should(BeTrue())

	By("rolling the agents' DaemonSet while lines flow")
	time.Sleep(5 * time.Second)
	run("-n", agentNS, "rollout", "restart", "daemonset/log-capturer-agent")
	run("-n", agentNS, "rollout", "status", "daemonset/log-capturer-agent", "--timeout=180s")
	Expect(podsDoneIn(agentLogs, map[string]string{"writer": "rotating"})()).To(BeNumerically("<", 2),
		"the writers still wrote when the rolling update was done")

	By("waiting for the writers to finish")
	Eventually(podsDoneIn(agentLogs, map[string]string{"writer": "rotating"}), 4*time.Minute, 2*time.Second).Should(Equal(2))
	check := func() []string { return problems(receivedIn(agentLogs), 1000, nil) }
	Eventually(check, 60*time.Second, 2*time.Second).Should(BeEmpty())
	Consistently(check, 5*time.Second, time.Second).Should(BeEmpty())
	Expect(agentRotatedFiles()).To(BeNumerically(">=", 4), "the kubelet rotated the writers' logs")

	after, inFlight := podsLog()
	Expect(after-before).To(BeZero(), "pods/log requests while the agent served the node")
	Expect(inFlight).To(BeZero())

	Eventually(func() string { return string(agentCondition(logsv1alpha1.ConditionReady).Status) }, time.Minute, time.Second).Should(Equal("True"))
	Eventually(func() *logsv1alpha1.AgentsStatus {
		if w := agentPipeline().Status.Workers; w != nil {
			return w.Agents
		}
		return nil
	}, time.Minute, time.Second).Should(HaveValue(And(
		HaveField("Nodes", int32(1)), HaveField("Reporting", int32(1)))))
	ws := agentPipeline().Status.Workers
	Expect(ws.FileContainers).To(Equal(int32(2)))
	lines := 0
	for _, in := range receivedIn(agentLogs) {
		lines += in.done
	}
	GinkgoWriter.Printf("agent: instances=%d lines=%d rotatedFiles=%d podsLogRequests=%d; status lines=%d fileContainers=%d goroutines=%d fds=%d unreadBytes=%d\n",
		len(receivedIn(agentLogs)), lines, agentRotatedFiles(), after-before, ws.LinesTotal, ws.FileContainers, ws.Goroutines, ws.OpenFileDescriptors, ws.UnreadBytes)
	GinkgoWriter.Println(run("-n", agentLogs, "get", "lp", "-o", "wide"))

	By("scraping the agent's own metrics, labelled with its node, as an authorized client")
	nodeName := agentPod().Spec.NodeName
	var want []types.GomegaMatcher
	for _, series := range []string{
		`log_capturer_file_containers{node="` + nodeName + `",pipeline="` + agentLogs + `/writers"} 2`,
		`log_capturer_logs_processed_total{node="` + nodeName + `",pipeline="` + agentLogs + `/writers"}`,
		// The sampler's next look after the last line was acknowledged.
		`log_capturer_unread_bytes{node="` + nodeName + `",pipeline="` + agentLogs + `/writers"} 0`,
		`go_goroutines{node="` + nodeName + `"}`,
	} {
		want = append(want, ContainSubstring(series))
	}
	Eventually(scrapeAgent, time.Minute, 2*time.Second).Should(And(want...))
}

// scrapeAgent reads the agent's /metrics over HTTPS from its pod IP, with
// the admin's token (the agent asks the API server to review it); its
// certificate is self-signed. It returns why when the scrape failed.
func scrapeAgent() string {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubecfg)
	Expect(err).NotTo(HaveOccurred())
	p := agentPod()
	if p == nil {
		return "no agent pod runs"
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the agent's certificate is self-signed
	}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+net.JoinHostPort(p.Status.PodIP, "8443")+"/metrics", nil)
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Authorization", "Bearer "+cfg.BearerToken)
	resp, err := hc.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode != http.StatusOK {
		return resp.Status + ": " + string(b)
	}
	return string(b)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// agentRemoved deletes the agents' DaemonSet while a writer writes: the
// operator (auto capture) reads the node through the API from the agent's
// final positions, and every line arrives once.
func agentRemoved() {
	// Slow and short enough that the kubelet does not rotate its log while
	// the API follows it (the kubelet's own follow can lose the last lines
	// of a rotated file: see kubeletLost).
	w := writer("fallback", 1, 6000, 100)
	w.Namespace = agentLogs
	for i, e := range w.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "PAD" {
			w.Spec.Template.Spec.Containers[0].Env[i].Value = "40"
		}
	}
	Expect(k8sClient.Create(ctx, w)).To(Succeed())
	fallbackLines := func() int {
		n := 0
		for _, in := range receivedIn(agentLogs) {
			if strings.HasPrefix(in.pod, "fallback") {
				for _, seqs := range in.streams {
					n += len(seqs)
				}
			}
		}
		return n
	}
	Eventually(fallbackLines, 90*time.Second, time.Second).Should(BeNumerically(">=", 500), "the agent reads the new writer")
	_, inFlight := podsLog()
	Expect(inFlight).To(BeZero())

	By("deleting the agents' DaemonSet while the writer writes")
	atRemoval := fallbackLines()
	run("-n", agentNS, "delete", "daemonset/log-capturer-agent", "--cascade=foreground", "--timeout=120s")
	Eventually(func() int { return podsIn(agentNS, map[string]string{"app.kubernetes.io/component": "agent"}) }, 2*time.Minute, time.Second).
		Should(BeZero())
	Eventually(func() int { _, n := podsLog(); return n }, 90*time.Second, time.Second).Should(BeNumerically(">=", 1),
		"the operator follows the node's pods through the API")
	Eventually(func(g Gomega) {
		ws := agentPipeline().Status.Workers
		g.Expect(ws).NotTo(BeNil())
		g.Expect(ws.FileContainers).To(BeZero())
		g.Expect(ws.ActiveStreams).To(BeNumerically(">=", 1))
	}, time.Minute, time.Second).Should(Succeed())
	atAPI := fallbackLines()

	By("waiting for the writer to finish: every line once, none excused")
	Eventually(podsDoneIn(agentLogs, map[string]string{"writer": "fallback"}), 3*time.Minute, 2*time.Second).Should(Equal(1))
	check := func() []string { return problems(receivedIn(agentLogs), 1000, nil) }
	Eventually(check, 60*time.Second, 2*time.Second).Should(BeEmpty())
	Consistently(check, 5*time.Second, time.Second).Should(BeEmpty())
	Expect(atAPI).To(BeNumerically("<", 6000), "the API took over while the writer wrote")
	GinkgoWriter.Printf("agents removed: 6000 lines once; the agent had delivered %d when its DaemonSet was deleted, %d when the API took over\n",
		atRemoval, atAPI)
}
