package operator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/test/builders"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

func newNS() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "health-"}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

func makePods(ns string, from, to int) {
	for i := from; i < to; i++ {
		name := fmt.Sprintf("app-%03d", i)
		kubelet.Container(ns, name, "app")
		Expect(k8sClient.Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "x"}},
			Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "app", Image: "x"}}},
		})).To(Succeed())
	}
}

// writeLines keeps writing a line per pod every interval until ctx ends.
func writeLines(ctx context.Context, ns string, pods int, every time.Duration) {
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for i := range pods {
				kubelet.Container(ns, fmt.Sprintf("app-%03d", i), "app").Write(time.Now(), fmt.Sprintf("line %d", n))
			}
		}
	}()
}

func pipeline(ns, name string, sinks ...string) *logsv1alpha1.LogPipeline {
	return builders.Pipeline(ns, name, sinks...).WithSelector(map[string]string{"app": "x"}).With(func(p *logsv1alpha1.LogPipeline) {
		p.Spec.Health.Window = metav1.Duration{Duration: time.Minute}
		p.Spec.Health.NoDeliveryTimeout = metav1.Duration{Duration: 10 * time.Second}
		p.Spec.Rotation.Interval = metav1.Duration{Duration: 10 * time.Second}
		p.Spec.StreamPool.MaxStreams = 200
	}).Build()
}

func cond(ns, name, t string) func(Gomega) *metav1.Condition {
	return func(g Gomega) *metav1.Condition {
		p := &logsv1alpha1.LogPipeline{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p)).To(Succeed())
		return meta.FindStatusCondition(p.Status.Conditions, t)
	}
}

func reason(st metav1.ConditionStatus, r string) OmegaMatcher {
	return And(Not(BeNil()), HaveField("Status", st), HaveField("Reason", r))
}

func fastSink(ns, name, url string) *logsv1alpha1.SinkTarget {
	return builders.Sink(ns, name).Loki(url).With(func(s *logsv1alpha1.SinkTarget) {
		s.Spec.Batch.MaxWait = metav1.Duration{Duration: 100 * time.Millisecond}
		s.Spec.Retry.MinBackoff = metav1.Duration{Duration: 100 * time.Millisecond}
		s.Spec.Retry.MaxBackoff = metav1.Duration{Duration: time.Second}
	}).Build()
}

var _ = Describe("Health from the workers' metrics", func() {
	It("catches a goroutine leak within one window, not growth from scaling 10 to 100 pods, with bounded status writes", func() {
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		leakNS, scaleNS, steadyNS := newNS(), newNS(), newNS()
		for _, ns := range []string{leakNS, scaleNS, steadyNS} {
			Expect(k8sClient.Create(ctx, fastSink(ns, "loki", lokiURL))).To(Succeed())
		}
		makePods(leakNS, 0, 3)
		makePods(scaleNS, 0, 10)
		makePods(steadyNS, 0, 5)
		writeLines(wctx, leakNS, 3, 100*time.Millisecond)
		writeLines(wctx, scaleNS, 10, 100*time.Millisecond)
		writeLines(wctx, steadyNS, 5, 100*time.Millisecond)

		watcher, err := k8sClient.Watch(ctx, &logsv1alpha1.LogPipelineList{}, client.InNamespace(steadyNS))
		Expect(err).NotTo(HaveOccurred())
		defer watcher.Stop()
		var mu sync.Mutex
		writes := 0
		go func() {
			var prev *logsv1alpha1.LogPipeline
			for ev := range watcher.ResultChan() {
				if ev.Type == watch.Modified {
					mu.Lock()
					writes++
					mu.Unlock()
					cur := ev.Object.(*logsv1alpha1.LogPipeline)
					if prev != nil && os.Getenv("DEBUG_WRITES") != "" {
						a, _ := json.Marshal(prev.Status)
						b, _ := json.Marshal(cur.Status)
						GinkgoWriter.Printf("WRITE\n%s\n%s\n", a, b)
					}
					prev = cur
				}
			}
		}()

		leaky.Store(leakNS + "/leaky")
		Expect(k8sClient.Create(ctx, pipeline(leakNS, "leaky", "loki"))).To(Succeed())
		Expect(k8sClient.Create(ctx, pipeline(scaleNS, "scaled", "loki"))).To(Succeed())
		Expect(k8sClient.Create(ctx, pipeline(steadyNS, "steady", "loki"))).To(Succeed())
		start := time.Now()
		Eventually(cond(scaleNS, "scaled", logsv1alpha1.ConditionReady), 20*time.Second).Should(reason(metav1.ConditionTrue, logsv1alpha1.ReasonWorkersRunning))
		makePods(scaleNS, 10, 100)

		leak := cond(leakNS, "leaky", logsv1alpha1.ConditionWorkersHealthy)
		scaled := cond(scaleNS, "scaled", logsv1alpha1.ConditionWorkersHealthy)
		Eventually(func(g Gomega) *metav1.Condition {
			g.Expect(scaled(g)).NotTo(HaveField("Reason", logsv1alpha1.ReasonGoroutineLeak), "scaling is not a leak")
			return leak(g)
		}, 100*time.Second, time.Second).Should(reason(metav1.ConditionFalse, logsv1alpha1.ReasonGoroutineLeak))
		GinkgoWriter.Printf("leak caught after %s: %s\n", time.Since(start).Round(time.Second), leak(Default).Message)
		Expect(leak(Default).Message).To(ContainSubstring("(threshold 2.00)"))
		Expect(cond(leakNS, "leaky", logsv1alpha1.ConditionReady)(Default)).To(reason(metav1.ConditionTrue, logsv1alpha1.ReasonDegraded))

		// Keep going to two minutes: the scaled pipeline stays free of a leak verdict.
		for time.Since(start) < 2*time.Minute {
			Expect(scaled(Default)).NotTo(HaveField("Reason", logsv1alpha1.ReasonGoroutineLeak))
			time.Sleep(2 * time.Second)
		}
		Expect(scaled(Default)).To(reason(metav1.ConditionTrue, logsv1alpha1.ReasonHealthy))
		p := &logsv1alpha1.LogPipeline{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: scaleNS, Name: "scaled"}, p)).To(Succeed())
		Expect(p.Status.Workers.SelectedContainers).To(Equal(int32(100)))
		Expect(p.Status.Workers.ActiveStreams).To(Equal(int32(100)))
		elapsed := time.Since(start)
		mu.Lock()
		n := writes
		mu.Unlock()
		GinkgoWriter.Printf("status writes of a steady pipeline in %s at a 1s sampling period: %d\n", elapsed.Round(time.Second), n)
		Expect(n).To(BeNumerically("<=", int(elapsed/time.Second)/4), "a steady pipeline writes status far less than once per sampling period")
		Expect(cond(steadyNS, "steady", logsv1alpha1.ConditionFlowHealthy)(Default)).To(reason(metav1.ConditionTrue, logsv1alpha1.ReasonHealthy))
	})

	It("reports a failing sink as SinkUnavailable and recovers; drops under DropNewest are counted", func() {
		ns := newNS()
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		good, flaky := lokireceiver.New(), lokireceiver.New()
		gs, fs := httptest.NewServer(good), httptest.NewServer(flaky)
		defer gs.Close()
		defer fs.Close()
		defer good.Close()
		defer flaky.Close()
		flaky.FailAll(lokireceiver.Fault{Status: 500, Body: "ingester unavailable"})
		Expect(k8sClient.Create(ctx, fastSink(ns, "flaky", fs.URL))).To(Succeed())
		Expect(k8sClient.Create(ctx, fastSink(ns, "good", gs.URL))).To(Succeed())
		dropper := fastSink(ns, "dropper", fs.URL)
		dropper.Spec.Buffer.WhenFull = logsv1alpha1.WhenFullDropNewest
		dropper.Spec.Buffer.MaxBytes = resource.MustParse("4Ki")
		dropper.Spec.Batch.MaxBytes = resource.MustParse("1Ki")
		dropper.Spec.Retry.MaxBackoff = metav1.Duration{Duration: time.Hour}
		Expect(k8sClient.Create(ctx, dropper)).To(Succeed())
		makePods(ns, 0, 2)
		writeLines(wctx, ns, 2, 50*time.Millisecond)
		Expect(k8sClient.Create(ctx, pipeline(ns, "unavailable", "flaky"))).To(Succeed())
		Expect(k8sClient.Create(ctx, pipeline(ns, "dropping", "good", "dropper"))).To(Succeed())

		Eventually(cond(ns, "unavailable", logsv1alpha1.ConditionFlowHealthy), 30*time.Second, 500*time.Millisecond).
			Should(reason(metav1.ConditionFalse, logsv1alpha1.ReasonSinkUnavailable))
		Expect(cond(ns, "unavailable", logsv1alpha1.ConditionFlowHealthy)(Default).Message).To(ContainSubstring("ingester unavailable"))
		Expect(cond(ns, "unavailable", logsv1alpha1.ConditionReady)(Default)).To(HaveField("Status", metav1.ConditionFalse))
		status, _ := argoHealth("health.lua", getPipeline(ns, "unavailable"))
		Expect(status).To(Equal("Degraded"))

		Eventually(cond(ns, "dropping", logsv1alpha1.ConditionFlowHealthy), 30*time.Second, 500*time.Millisecond).
			Should(reason(metav1.ConditionFalse, logsv1alpha1.ReasonSomeDataDropped))
		Expect(cond(ns, "dropping", logsv1alpha1.ConditionFlowHealthy)(Default).Message).To(MatchRegexp(`dropped \d+ of \d+ lines .*dropper: \d+`))
		Expect(cond(ns, "dropping", logsv1alpha1.ConditionReady)(Default)).To(reason(metav1.ConditionTrue, logsv1alpha1.ReasonDegraded))
		status, _ = argoHealth("health.lua", getPipeline(ns, "dropping"))
		Expect(status).To(Equal("Degraded"), "Argo CD shows a degraded pipeline as Degraded")
		p := &logsv1alpha1.LogPipeline{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "dropping"}, p)).To(Succeed())
		Expect(p.Status.Workers.DroppedLines).To(BeNumerically(">", 0))

		flaky.Recover()
		Eventually(cond(ns, "unavailable", logsv1alpha1.ConditionFlowHealthy), 60*time.Second, 500*time.Millisecond).
			Should(reason(metav1.ConditionTrue, logsv1alpha1.ReasonHealthy))
		Eventually(cond(ns, "unavailable", logsv1alpha1.ConditionReady), 10*time.Second).Should(HaveField("Status", metav1.ConditionTrue))
		status, _ = argoHealth("health.lua", getPipeline(ns, "unavailable"))
		Expect(status).To(Equal("Healthy"))
	})

	It("calls a pipeline whose pods write nothing Idle, not unhealthy", func() {
		ns := newNS()
		Expect(k8sClient.Create(ctx, fastSink(ns, "loki", lokiURL))).To(Succeed())
		makePods(ns, 0, 2)
		Expect(k8sClient.Create(ctx, pipeline(ns, "quiet", "loki"))).To(Succeed())
		Eventually(cond(ns, "quiet", logsv1alpha1.ConditionFlowHealthy), 30*time.Second, 500*time.Millisecond).
			Should(reason(metav1.ConditionTrue, logsv1alpha1.ReasonIdle))
		Expect(cond(ns, "quiet", logsv1alpha1.ConditionReady)(Default)).To(HaveField("Status", metav1.ConditionTrue))
	})
})

var _ = Describe("Rejected batches", func() {
	It("become Warning Events on the SinkTarget with the server's message, and are counted as dropped", func() {
		ns := newNS()
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		rcv := lokireceiver.New()
		srv := httptest.NewServer(rcv)
		defer srv.Close()
		defer rcv.Close()
		rcv.FailAll(lokireceiver.Fault{Status: 400, Body: "entry for stream has timestamp too old"})
		st := fastSink(ns, "picky", srv.URL)
		Expect(k8sClient.Create(ctx, st)).To(Succeed())
		makePods(ns, 0, 1)
		writeLines(wctx, ns, 1, 100*time.Millisecond)
		Expect(k8sClient.Create(ctx, pipeline(ns, "rejected", "picky"))).To(Succeed())

		Eventually(func(g Gomega) []eventsv1.Event {
			list := &eventsv1.EventList{}
			g.Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			var out []eventsv1.Event
			for _, e := range list.Items {
				if e.Reason == "BatchRejected" {
					out = append(out, e)
				}
			}
			return out
		}, 30*time.Second, 500*time.Millisecond).Should(ContainElement(And(
			HaveField("Type", corev1.EventTypeWarning),
			HaveField("Regarding.Kind", "SinkTarget"),
			HaveField("Regarding.Name", "picky"),
			HaveField("Regarding.UID", Not(BeEmpty())),
			HaveField("Note", ContainSubstring("entry for stream has timestamp too old")),
		)))
		Eventually(cond(ns, "rejected", logsv1alpha1.ConditionFlowHealthy), 30*time.Second, 500*time.Millisecond).
			Should(reason(metav1.ConditionFalse, logsv1alpha1.ReasonAllDataDropped))
	})
})
