package agent_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/internal/operator"
	"github.com/log-capturer/log-capturer/test/builders"
	"github.com/log-capturer/log-capturer/test/kubeletsim"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

// twin writes each line both where the API serves it (the simulated
// kubelet) and where the node agent reads it (the CRI file), with the same
// timestamp, as a real node has one log behind both.
type twin struct {
	api  *kubeletsim.Container
	file string
	t0   time.Time
}

// write writes lines from..to-1, "auto line <n>", 2 ms apart.
func (w *twin) write(from, to int) {
	ExpectWithOffset(1, os.MkdirAll(filepath.Dir(w.file), 0o755)).To(Succeed())
	f, err := os.OpenFile(w.file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	defer f.Close()
	var b strings.Builder
	for i := from; i < to; i++ {
		ts := w.t0.Add(time.Duration(i) * 2 * time.Millisecond)
		line := fmt.Sprintf("auto line %06d", i)
		fmt.Fprintf(&b, "%s stdout F %s\n", ts.Format(time.RFC3339Nano), line)
		w.api.Write(ts, line)
	}
	_, err = f.WriteString(b.String())
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
}

// autoLines returns the line numbers receiver got, in arrival order.
func autoLines(r *lokireceiver.Receiver) []int {
	var out []int
	for _, e := range r.Entries() {
		var n int
		if _, err := fmt.Sscanf(e.Line, "auto line %d", &n); err == nil {
			out = append(out, n)
		}
	}
	return out
}

var _ = Describe("the operator with --capture=auto", func() {
	It("reads a node through the API until its agent comes, hands its containers to the agent and back at their positions: every line once", func() {
		const autoNode = "node-auto"
		kubelet, err := kubeletsim.Start()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _ = kubelet.Close() })
		Expect(kubelet.RegisterNode(ctx, c, autoNode)).To(Succeed())
		DeferCleanup(func() { _ = c.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: autoNode}}) })

		tmp := GinkgoT().TempDir()
		podsDir, journal := filepath.Join(tmp, "pods"), filepath.Join(tmp, "journal")
		receiver := lokireceiver.New()
		rsrv := httptest.NewServer(receiver)
		DeferCleanup(func() { receiver.Close(); rsrv.Close() })
		url, ca, _ := runOperator(tmp, operator.CaptureAuto, func(o *operator.Options) {
			o.AgentHandBackAfter, o.PositionsNamespace = 2*time.Second, "shop"
		})

		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "auto-1", Labels: map[string]string{"app": "auto"}},
			Spec: corev1.PodSpec{NodeName: autoNode, Containers: []corev1.Container{{Name: "main", Image: "x"}}}}
		Expect(c.Create(ctx, pod)).To(Succeed())
		DeferCleanup(func() { _ = c.Delete(ctx, pod) })
		w := &twin{api: kubelet.Container("shop", "auto-1", "main"),
			file: filepath.Join(podsDir, "shop_auto-1_"+string(pod.UID), "main", "0.log"),
			t0:   time.Now().Add(-time.Hour).Truncate(time.Second)}
		w.write(0, 1000)
		Expect(c.Create(ctx, builders.Sink("shop", "auto-loki").Loki(rsrv.URL).Build())).To(Succeed())
		Expect(c.Create(ctx, builders.Pipeline("shop", "auto", "auto-loki").WithSelector(map[string]string{"app": "auto"}).
			With(func(p *logsv1alpha1.LogPipeline) {
				p.Spec.StartAt = logsv1alpha1.StartAtBeginning
				p.Spec.Positions.WriteInterval = metav1.Duration{Duration: time.Second}
			}).Build())).To(Succeed())
		DeferCleanup(func() {
			_ = c.Delete(ctx, &logsv1alpha1.LogPipeline{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "auto"}})
		})
		key := client.ObjectKey{Namespace: "shop", Name: "auto"}
		workersOf := func(g Gomega) *logsv1alpha1.WorkerStatus {
			lp := &logsv1alpha1.LogPipeline{}
			g.Expect(c.Get(ctx, key, lp)).To(Succeed())
			g.Expect(lp.Status.Workers).NotTo(BeNil())
			return lp.Status.Workers
		}

		By("no agent on the node: the API engine reads it")
		Eventually(func() int { return len(autoLines(receiver)) }, 30*time.Second, 100*time.Millisecond).Should(Equal(1000))
		Eventually(func(g Gomega) {
			ws := workersOf(g)
			g.Expect(ws.SelectedContainers).To(Equal(int32(1)))
			g.Expect(ws.FileContainers).To(BeZero())
		}, 30*time.Second, 200*time.Millisecond).Should(Succeed())

		// From here a writer writes on, 20 lines every 20 ms, while the
		// container moves to the agent and back.
		wctx, stopWriting := context.WithCancel(ctx)
		written := make(chan int, 1)
		go func() {
			n := 1000
			defer func() { written <- n }()
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-wctx.Done():
					return
				case <-t.C:
					w.write(n, n+20)
					n += 20
				}
			}
		}()
		defer stopWriting()
		linesNow := func() int { return len(autoLines(receiver)) }

		By("an agent pod comes to the node while lines are written: the API releases the container and the agent reads on from its position")
		token, agentPod := agentTokenOn(tmp, autoNode)
		stop := runAgentOn(autoNode, url, ca, podsDir, journal, token)
		Eventually(func(g Gomega) {
			ws := workersOf(g)
			g.Expect(ws.FileContainers).To(Equal(int32(1)))
			g.Expect(ws.Agents).To(HaveValue(HaveField("Reporting", int32(1))))
		}, 30*time.Second, 200*time.Millisecond).Should(Succeed())
		Eventually(kubelet.ActiveStreams, 10*time.Second, 100*time.Millisecond).Should(BeZero(), "the API engine released the container")
		Eventually(func() string { return readyMessage(key) }, 30*time.Second, 200*time.Millisecond).
			Should(ContainSubstring("Node agents read 1 of them from the kubelet's files, the operator 0 through the API."))
		atAgent := linesNow()
		Eventually(linesNow, 10*time.Second, 100*time.Millisecond).Should(BeNumerically(">", atAgent+200), "the agent delivers")
		Expect(kubelet.ActiveStreams()).To(BeZero(), "the API engine reads nothing of the agent's node")

		By("the agent stops in order and its pod goes, lines still written: the API reads on from the agent's final positions")
		Expect(stop()).To(Succeed())
		Expect(c.Delete(ctx, agentPod, client.GracePeriodSeconds(0))).To(Succeed())
		Eventually(func(g Gomega) {
			ws := workersOf(g)
			g.Expect(ws.FileContainers).To(BeZero())
			g.Expect(ws.ActiveStreams).To(Equal(int32(1)))
		}, 30*time.Second, 200*time.Millisecond).Should(Succeed())
		Eventually(func() string { return readyMessage(key) }, 30*time.Second, 200*time.Millisecond).
			Should(ContainSubstring("Node agents read 0 of them from the kubelet's files, the operator 1 through the API."))
		atAPI := linesNow()
		Eventually(linesNow, 10*time.Second, 100*time.Millisecond).Should(BeNumerically(">", atAPI+200), "the API engine delivers again")
		stopWriting()
		var total int
		Eventually(written).Should(Receive(&total))
		Eventually(linesNow, 30*time.Second, 100*time.Millisecond).Should(Equal(total))
		Consistently(linesNow, 2*time.Second, 200*time.Millisecond).Should(Equal(total))
		got := autoLines(receiver)
		for i, n := range got {
			Expect(n).To(Equal(i), "line %d arrived as the %d-th", n, i)
		}
		Expect(kubelet.ActiveStreams()).To(Equal(int64(1)), "the API engine reads the node again")
		GinkgoWriter.Printf("auto: %d lines once and in order, written on while the container moved from the API to the agent (at line %d) and back (at line %d)\n",
			total, atAgent, atAPI)
	})
})

// readyMessage is the pipeline's Ready condition's message.
func readyMessage(key client.ObjectKey) string {
	lp := &logsv1alpha1.LogPipeline{}
	if err := c.Get(ctx, key, lp); err != nil {
		return err.Error()
	}
	if cond := meta.FindStatusCondition(lp.Status.Conditions, logsv1alpha1.ConditionReady); cond != nil {
		return cond.Message
	}
	return ""
}
