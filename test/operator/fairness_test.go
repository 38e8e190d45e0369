package operator_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/test/builders"
	"github.com/log-capturer/log-capturer/test/kubeletsim"
)

// blackhole is a TCP endpoint that accepts connections and neither reads
// nor answers them, so that every send to it hangs until the sink's request
// timeout and a stopping pipeline has a queue it cannot drain. Once answer
// is called it closes the held connections and serves every new one with
// an http.Server, so that the queues drain and deleting the pipelines is
// quick.
type blackhole struct {
	net.Listener

	mu        sync.Mutex
	held      []net.Conn
	answering bool
}

// Accept holds every connection until answer is called; then it hands them
// to the caller.
func (b *blackhole) Accept() (net.Conn, error) {
	for {
		c, err := b.Listener.Accept()
		if err != nil {
			return nil, err
		}
		b.mu.Lock()
		if b.answering {
			b.mu.Unlock()
			return c, nil
		}
		b.held = append(b.held, c)
		b.mu.Unlock()
	}
}

// answer closes the held connections and lets new ones through.
func (b *blackhole) answer() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.answering = true
	for _, c := range b.held {
		_ = c.Close()
	}
	b.held = nil
}

// Close stops accepting and closes the held connections.
func (b *blackhole) Close() error {
	b.answer()
	return b.Listener.Close()
}

// startBlackhole starts a blackhole on 127.0.0.1 that, once answering,
// answers every request with 204; it is closed when the spec ends.
func startBlackhole() (*blackhole, string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	bh := &blackhole{Listener: ln}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusNoContent)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(bh) }()
	DeferCleanup(func() {
		Expect(srv.Close()).To(Succeed())
		Eventually(served, 5*time.Second).Should(Receive(MatchError(http.ErrServerClosed)))
	})
	return bh, "http://" + ln.Addr().String()
}

// createNamespace creates the namespace name.
func createNamespace(name string) {
	Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
}

// createLoggingPod creates a pod bound to the simulated node whose
// container "app" the kubelet serves logs of.
func createLoggingPod(ns, name string, labels map[string]string) *kubeletsim.Container {
	c := kubelet.Container(ns, name, "app")
	Expect(k8sClient.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	})).To(Succeed())
	return c
}

// deleteAllIn deletes everything the tests created in the namespaces, and
// the namespaces: pipelines first, waiting until the operator stopped their
// workers and released them, then sinks, pods (at once: no kubelet confirms
// a graceful deletion), the operator's Events, and the simulated containers
// named in containers ("<namespace>/<pod>").
func deleteAllIn(namespaces []string, containers []string) {
	for _, ns := range namespaces {
		Expect(k8sClient.DeleteAllOf(ctx, &logsv1alpha1.LogPipeline{}, client.InNamespace(ns))).To(Succeed())
	}
	for _, ns := range namespaces {
		Eventually(func(g Gomega) []logsv1alpha1.LogPipeline {
			l := &logsv1alpha1.LogPipelineList{}
			g.Expect(k8sClient.List(ctx, l, client.InNamespace(ns))).To(Succeed())
			return l.Items
		}, 3*time.Minute, 200*time.Millisecond).Should(BeEmpty(), "the operator releases every pipeline of %s", ns)
	}
	for _, ns := range namespaces {
		Expect(k8sClient.DeleteAllOf(ctx, &logsv1alpha1.SinkTarget{}, client.InNamespace(ns))).To(Succeed())
		Expect(k8sClient.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(ns), client.GracePeriodSeconds(0))).To(Succeed())
		Expect(k8sClient.DeleteAllOf(ctx, &eventsv1.Event{}, client.InNamespace(ns))).To(Succeed())
		Expect(k8sClient.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	}
	for _, c := range containers {
		ns, pod, _ := strings.Cut(c, "/")
		kubelet.Remove(ns, pod, "app")
	}
}

// reconcileStats is what controller-runtime's metrics tell of one
// controller's reconciles so far.
type reconcileStats struct {
	reconciles, errors uint64
	// over5s is how many reconciles took longer than 5s; queuedOver1s how
	// many requests waited longer than 1s in the work queue.
	over5s, queuedOver1s uint64
	seconds              float64
}

// sub returns the stats of what happened since before.
func (s reconcileStats) sub(before reconcileStats) reconcileStats {
	return reconcileStats{reconciles: s.reconciles - before.reconciles, errors: s.errors - before.errors,
		over5s: s.over5s - before.over5s, queuedOver1s: s.queuedOver1s - before.queuedOver1s,
		seconds: s.seconds - before.seconds}
}

func (s reconcileStats) String() string {
	mean := time.Duration(0)
	if s.reconciles > 0 {
		mean = time.Duration(s.seconds / float64(s.reconciles) * float64(time.Second))
	}
	return fmt.Sprintf("%d reconciles (mean %s, %d over 5s, %d errors), %d requests queued over 1s",
		s.reconciles, mean.Round(time.Millisecond), s.over5s, s.errors, s.queuedOver1s)
}

// controllerStats reads the reconcile metrics of controller from the
// registry the operator's controllers report to (it runs in this process).
func controllerStats(controller string) reconcileStats {
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		// Gather returns what it could gather with the error.
		fmt.Fprintf(GinkgoWriter, "gathering metrics: %v\n", err)
	}
	var s reconcileStats
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["controller"] != controller && labels["name"] != controller {
				continue
			}
			h := m.GetHistogram()
			switch f.GetName() {
			case "controller_runtime_reconcile_errors_total":
				s.errors += uint64(m.GetCounter().GetValue())
			case "controller_runtime_reconcile_time_seconds":
				s.reconciles += h.GetSampleCount()
				s.seconds += h.GetSampleSum()
				s.over5s += h.GetSampleCount() - cumulativeUpTo(h.GetBucket(), 5)
			case "workqueue_queue_duration_seconds":
				s.queuedOver1s += h.GetSampleCount() - cumulativeUpTo(h.GetBucket(), 1)
			}
		}
	}
	return s
}

// cumulativeUpTo is how many observations of a histogram were at most
// bound, by its largest bucket not above bound.
func cumulativeUpTo[B interface {
	GetUpperBound() float64
	GetCumulativeCount() uint64
}](buckets []B, bound float64) uint64 {
	var n uint64
	for _, b := range buckets {
		if b.GetUpperBound() <= bound {
			n = b.GetCumulativeCount()
		}
	}
	return n
}

// The churn re-applies 20 pipelines whose sink never answers, each
// re-apply stopping workers with a queue to drain; a pipeline of another
// namespace created meanwhile must still be Ready within 2s.
var _ = Describe("Fairness between namespaces", func() {
	It("makes a calm namespace's new pipeline Ready within 2s while 20 pipelines of another namespace are re-applied over and over", func() {
		const churnNS, calmNS, churning = "churn", "calm", 20
		bh, blackholeURL := startBlackhole()

		createNamespace(churnNS)
		var containers, names []string
		pods := map[string]*kubeletsim.Container{}
		DeferCleanup(func() {
			// Deleting a pipeline drains it: let the queues go first.
			bh.answer()
			deleteAllIn([]string{churnNS}, containers)
		})
		Expect(k8sClient.Create(ctx, builders.Sink(churnNS, "blackhole").HTTP(blackholeURL).With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Buffer.MaxBytes = resource.MustParse("16Ki")
			s.Spec.Batch.MaxBytes = resource.MustParse("1Ki")
			s.Spec.Batch.MaxWait = metav1.Duration{Duration: 100 * time.Millisecond}
			s.Spec.Retry.MinBackoff = metav1.Duration{Duration: 100 * time.Millisecond}
			s.Spec.Retry.MaxBackoff = metav1.Duration{Duration: time.Second}
		}).Build())).To(Succeed())
		filler := strings.Repeat("x", 80)
		for i := range churning {
			name := fmt.Sprintf("p-%02d", i)
			names = append(names, name)
			containers = append(containers, churnNS+"/"+name)
			pods[name] = createLoggingPod(churnNS, name, map[string]string{"app": "churn", "pipeline": name})
			// More than the sink's buffer holds, so that its queue fills at once.
			for n := range 300 {
				pods[name].Write(time.Now(), fmt.Sprintf("%s line %d %s", name, n, filler))
			}
		}
		wctx, stopWriting := context.WithCancel(ctx)
		DeferCleanup(stopWriting)
		go func() {
			t := time.NewTicker(250 * time.Millisecond)
			defer t.Stop()
			for n := 300; ; n++ {
				select {
				case <-wctx.Done():
					return
				case <-t.C:
				}
				for _, name := range names {
					pods[name].Write(time.Now(), fmt.Sprintf("%s line %d %s", name, n, filler))
				}
			}
		}()
		for _, name := range names {
			Expect(k8sClient.Create(ctx, builders.Pipeline(churnNS, name, "blackhole").
				WithSelector(map[string]string{"app": "churn", "pipeline": name}).With(func(p *logsv1alpha1.LogPipeline) {
				p.Spec.StartAt = logsv1alpha1.StartAtBeginning
				p.Spec.Rotation.Interval = metav1.Duration{Duration: 30 * time.Second}
			}).Build())).To(Succeed())
		}
		for _, name := range names {
			Eventually(func(g Gomega) int32 {
				p := &logsv1alpha1.LogPipeline{}
				g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: churnNS, Name: name}, p)).To(Succeed())
				g.Expect(p.Status.Workers).NotTo(BeNil())
				g.Expect(p.Status.Workers.Sinks).To(HaveLen(1))
				return p.Status.Workers.Sinks[0].QueueFillPercent
			}, 60*time.Second, 200*time.Millisecond).Should(BeNumerically(">=", 50), "the queue of %s holds data to drain", name)
		}

		// Every iteration changes every pipeline's rotation interval, which
		// is part of the workers' configuration hash: each is a re-apply.
		before := controllerStats("logpipeline")
		churnCtx, stopChurn := context.WithCancel(ctx)
		var (
			churn     sync.WaitGroup
			reapplies atomic.Int64
			churnErr  error
		)
		stop := func() {
			stopChurn()
			churn.Wait()
		}
		DeferCleanup(stop)
		churn.Go(func() {
			t := time.NewTicker(500 * time.Millisecond)
			defer t.Stop()
			for i := 0; ; i++ {
				interval := "31s"
				if i%2 == 1 {
					interval = "30s"
				}
				patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"spec":{"rotation":{"interval":%q}}}`, interval))
				for _, name := range names {
					p := &logsv1alpha1.LogPipeline{ObjectMeta: metav1.ObjectMeta{Namespace: churnNS, Name: name}}
					if err := k8sClient.Patch(churnCtx, p, patch); err != nil {
						if churnCtx.Err() == nil {
							churnErr = fmt.Errorf("patching %s: %w", name, err)
						}
						return
					}
					reapplies.Add(1)
				}
				select {
				case <-churnCtx.Done():
					return
				case <-t.C:
				}
			}
		})
		Eventually(reapplies.Load, 30*time.Second, 50*time.Millisecond).Should(BeNumerically(">=", 2*churning),
			"the churn has changed every pipeline twice")

		createNamespace(calmNS)
		DeferCleanup(func() { deleteAllIn([]string{calmNS}, []string{calmNS + "/app-000"}) })
		Expect(k8sClient.Create(ctx, fastSink(calmNS, "loki", lokiURL))).To(Succeed())
		makePods(calmNS, 0, 1)
		start := time.Now()
		Expect(k8sClient.Create(ctx, pipeline(calmNS, "calm", "loki"))).To(Succeed())
		const patience = 90 * time.Second
		failures := InterceptGomegaFailures(func() {
			Eventually(cond(calmNS, "calm", logsv1alpha1.ConditionReady), patience, 50*time.Millisecond).
				Should(And(Not(BeNil()), HaveField("Status", metav1.ConditionTrue)))
		})
		took := time.Since(start)
		n := reapplies.Load()
		stop()
		ops := controllerStats("logpipeline").sub(before)
		// Measured: the churned queues may drain now, for a quick cleanup.
		bh.answer()
		Expect(churnErr).NotTo(HaveOccurred())
		// The churn was real: the operator took in every spec change.
		Eventually(func(g Gomega) {
			l := &logsv1alpha1.LogPipelineList{}
			g.Expect(k8sClient.List(ctx, l, client.InNamespace(churnNS))).To(Succeed())
			g.Expect(l.Items).To(HaveLen(churning))
			for _, p := range l.Items {
				g.Expect(p.Status.ObservedGeneration).To(Equal(p.Generation), "%s observed its last spec", p.Name)
			}
		}, 2*time.Minute, 200*time.Millisecond).Should(Succeed())

		ready := "Ready in " + took.Round(time.Millisecond).String()
		if len(failures) > 0 {
			ready = "not Ready within " + patience.String()
		}
		line := fmt.Sprintf("fairness: calm pipeline %s while %d pipelines churned (%d re-applies)", ready, churning, n)
		opsLine := "fairness: operator meanwhile: " + ops.String()
		fmt.Fprintln(GinkgoWriter, line)
		fmt.Fprintln(GinkgoWriter, opsLine)
		AddReportEntry("fairness", line+"\n"+opsLine)
		Expect(failures).To(BeEmpty(), "the calm pipeline becomes Ready")
		Expect(took).To(BeNumerically("<", 2*time.Second), "a namespace's new pipeline does not wait for another namespace's re-applies")
	})
})
