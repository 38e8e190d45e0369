package controllers_test

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/controllers"
	"github.com/log-capturer/log-capturer/test/builders"
)

const (
	timeout  = 20 * time.Second
	interval = 100 * time.Millisecond
)

func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ctrl-"}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

// condition returns a condition of a pipeline as the API server has it.
func condition(key types.NamespacedName, condType string) func(Gomega) *metav1.Condition {
	return func(g Gomega) *metav1.Condition {
		p := &logsv1alpha1.LogPipeline{}
		g.Expect(k8sClient.Get(ctx, key, p)).To(Succeed())
		return meta.FindStatusCondition(p.Status.Conditions, condType)
	}
}

func haveReason(st metav1.ConditionStatus, reason string) OmegaMatcher {
	return And(Not(BeNil()), HaveField("Status", st), HaveField("Reason", reason))
}

// kstatusOf computes the kstatus of a pipeline as kubectl and Flux would.
func kstatusOf(key types.NamespacedName) func(Gomega) status.Status {
	return func(g Gomega) status.Status {
		p := &logsv1alpha1.LogPipeline{}
		g.Expect(k8sClient.Get(ctx, key, p)).To(Succeed())
		m, err := k8sruntime.DefaultUnstructuredConverter.ToUnstructured(p)
		g.Expect(err).NotTo(HaveOccurred())
		res, err := status.Compute(&unstructured.Unstructured{Object: m})
		g.Expect(err).NotTo(HaveOccurred())
		return res.Status
	}
}

var _ = Describe("LogPipeline controller", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("stalls on a missing sink, becomes Ready when it appears and stalls again when it is deleted", func() {
		p := builders.Pipeline(ns, "shop", "loki").WithSelector(map[string]string{"app": "shop"}).Build()
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		key := client.ObjectKeyFromObject(p)

		Eventually(condition(key, logsv1alpha1.ConditionStalled), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonSinkNotFound))
		ready := condition(key, logsv1alpha1.ConditionReady)(Default)
		Expect(ready).To(haveReason(metav1.ConditionFalse, logsv1alpha1.ReasonSinkNotFound))
		Expect(ready.Message).To(ContainSubstring(`["loki"]`))
		Expect(ready.Message).To(ContainSubstring("1 of 1 SinkTargets do not exist"))
		Expect(condition(key, logsv1alpha1.ConditionSinksReady)(Default)).To(haveReason(metav1.ConditionFalse, logsv1alpha1.ReasonSinkNotFound))
		Expect(condition(key, logsv1alpha1.ConditionReconciling)(Default)).To(BeNil())
		Eventually(kstatusOf(key), timeout, interval).Should(Equal(status.FailedStatus))
		_, ok := workers.config(key)
		Expect(ok).To(BeFalse(), "a pipeline with a missing sink runs no workers")

		// No hot loop: a stalled pipeline is not reconciled again by itself.
		applies, _ := workers.counts(key)
		statusWrites := writes.get(key)
		Consistently(func() int { return writes.get(key) }, 2*time.Second, interval).Should(Equal(statusWrites))
		a, _ := workers.counts(key)
		Expect(a).To(Equal(applies))

		Expect(k8sClient.Create(ctx, builders.Sink(ns, "loki").Loki("http://loki:3100").Build())).To(Succeed())
		Eventually(condition(key, logsv1alpha1.ConditionReady), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonWorkersRunning))
		Expect(condition(key, logsv1alpha1.ConditionStalled)(Default)).To(BeNil())
		Expect(condition(key, logsv1alpha1.ConditionSinksReady)(Default)).To(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonSinksResolved))
		Expect(condition(key, logsv1alpha1.ConditionWorkersHealthy)(Default)).To(haveReason(metav1.ConditionUnknown, logsv1alpha1.ReasonAwaitingMetrics))
		Expect(condition(key, logsv1alpha1.ConditionFlowHealthy)(Default)).To(haveReason(metav1.ConditionUnknown, logsv1alpha1.ReasonAwaitingMetrics))
		Eventually(kstatusOf(key), timeout, interval).Should(Equal(status.CurrentStatus))

		cfg, ok := workers.config(key)
		Expect(ok).To(BeTrue())
		Expect(cfg.Namespace).To(Equal(ns))
		Expect(cfg.RotationInterval).To(Equal(5 * time.Minute))
		Expect(cfg.MaxStreams).To(Equal(50))
		Expect(cfg.Selector.MatchLabels).To(Equal(map[string]string{"app": "shop"}))
		Expect(cfg.Sinks).To(HaveLen(1))
		Expect(cfg.Sinks[0].Loki.URL).To(Equal("http://loki:3100"))
		Expect(cfg.Sinks[0].BatchMaxBytes).To(Equal(int64(1 << 20)))

		got := &logsv1alpha1.LogPipeline{}
		Expect(k8sClient.Get(ctx, key, got)).To(Succeed())
		Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		Expect(got.Status.Workers).NotTo(BeNil())
		Expect(got.Status.Workers.ActiveStreams).To(Equal(int32(2)))
		Expect(got.Finalizers).To(ContainElement(controllers.Finalizer))

		_, removesBefore := workers.counts(key)
		Expect(k8sClient.Delete(ctx, builders.Sink(ns, "loki").Build())).To(Succeed())
		Eventually(condition(key, logsv1alpha1.ConditionStalled), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonSinkNotFound))
		_, removes := workers.counts(key)
		Expect(removes).To(BeNumerically(">", removesBefore), "the workers stop when their sink is gone")

		Eventually(func(g Gomega) []string {
			list := &eventsv1.EventList{}
			g.Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			var reasons []string
			for _, e := range list.Items {
				if e.Regarding.Name == "shop" {
					reasons = append(reasons, e.Reason)
				}
			}
			return reasons
		}, timeout, interval).Should(ContainElements(logsv1alpha1.ReasonSinkNotFound, logsv1alpha1.ReasonWorkersRunning))
	})

	It("names a missing Secret and its key, and recovers when the Secret appears", func() {
		st := builders.Sink(ns, "loki").Loki("https://loki:3100").WithBearerToken("loki-token", "token").Build()
		Expect(k8sClient.Create(ctx, st)).To(Succeed())
		p := builders.Pipeline(ns, "app", "loki").Build()
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		key := client.ObjectKeyFromObject(p)

		Eventually(condition(key, logsv1alpha1.ConditionStalled), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonSecretNotFound))
		msg := condition(key, logsv1alpha1.ConditionReady)(Default).Message
		Expect(msg).To(ContainSubstring(`Secret "loki-token"`))
		Expect(msg).To(ContainSubstring("spec.loki.auth.bearerToken"))
		Eventually(func(g Gomega) *metav1.Condition {
			got := &logsv1alpha1.SinkTarget{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(st), got)).To(Succeed())
			return meta.FindStatusCondition(got.Status.Conditions, logsv1alpha1.ConditionReady)
		}, timeout, interval).Should(haveReason(metav1.ConditionFalse, logsv1alpha1.ReasonSecretNotFound))

		// The wrong key first, then the right one: each change re-reconciles through the Secret watch.
		sec := builders.Secret(ns, "loki-token", map[string]string{"other": "x"})
		Expect(k8sClient.Create(ctx, sec)).To(Succeed())
		Eventually(condition(key, logsv1alpha1.ConditionStalled), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonSecretKeyNotFound))
		sec.Data["token"] = []byte("s3cret")
		Expect(k8sClient.Update(ctx, sec)).To(Succeed())
		Eventually(condition(key, logsv1alpha1.ConditionReady), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonWorkersRunning))
		cfg, _ := workers.config(key)
		Expect(cfg.Sinks[0].Loki.Credentials.BearerToken).To(Equal("s3cret"))

		// A rotated credential reaches the workers.
		sec.Data["token"] = []byte("rotated")
		Expect(k8sClient.Update(ctx, sec)).To(Succeed())
		Eventually(func() string {
			c, _ := workers.config(key)
			return c.Sinks[0].Loki.Credentials.BearerToken
		}, timeout, interval).Should(Equal("rotated"))

		// The secret value never reaches status.
		got := &logsv1alpha1.LogPipeline{}
		Expect(k8sClient.Get(ctx, key, got)).To(Succeed())
		for _, c := range got.Status.Conditions {
			Expect(c.Message).NotTo(ContainSubstring("rotated"))
		}
		Eventually(func(g Gomega) *metav1.Condition {
			got := &logsv1alpha1.SinkTarget{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(st), got)).To(Succeed())
			g.Expect(got.Status.Type).To(Equal(logsv1alpha1.SinkTypeLoki))
			return meta.FindStatusCondition(got.Status.Conditions, logsv1alpha1.ConditionReady)
		}, timeout, interval).Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonConfigurationValid))
	})

	It("refuses a Secret that does not name the SinkTarget, and uses it once its owner consents", func() {
		// A tenant who may create SinkTargets but not read Secrets names
		// the namespace's deploy token, pointing at their own server.
		sec := builders.PrivateSecret(ns, "ci-deploy-token", map[string]string{"token": "deploy-s3cret"})
		Expect(k8sClient.Create(ctx, sec)).To(Succeed())
		st := builders.Sink(ns, "exfil").HTTP("https://attacker.example").WithBearerToken("ci-deploy-token", "token").Build()
		Expect(k8sClient.Create(ctx, st)).To(Succeed())
		p := builders.Pipeline(ns, "app", "exfil").Build()
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		key := client.ObjectKeyFromObject(p)
		Eventually(condition(key, logsv1alpha1.ConditionStalled), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonSecretNotAllowed))
		Expect(condition(key, logsv1alpha1.ConditionReady)(Default).Message).To(ContainSubstring(logsv1alpha1.AnnotationSinkTargets))
		_, running := workers.config(key)
		Expect(running).To(BeFalse(), "no worker runs with a Secret that was not shared")
		Eventually(func(g Gomega) *metav1.Condition {
			got := &logsv1alpha1.SinkTarget{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(st), got)).To(Succeed())
			return meta.FindStatusCondition(got.Status.Conditions, logsv1alpha1.ConditionReady)
		}, timeout, interval).Should(haveReason(metav1.ConditionFalse, logsv1alpha1.ReasonSecretNotAllowed))

		// Naming another SinkTarget is no consent for this one.
		sec.Annotations = map[string]string{logsv1alpha1.AnnotationSinkTargets: "loki, other"}
		Expect(k8sClient.Update(ctx, sec)).To(Succeed())
		Consistently(condition(key, logsv1alpha1.ConditionStalled), time.Second, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonSecretNotAllowed))
		// The owner consents: the annotation change alone re-reconciles.
		sec.Annotations[logsv1alpha1.AnnotationSinkTargets] = "loki, exfil"
		Expect(k8sClient.Update(ctx, sec)).To(Succeed())
		Eventually(condition(key, logsv1alpha1.ConditionReady), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonWorkersRunning))
		cfg, _ := workers.config(key)
		Expect(cfg.Sinks[0].HTTP.Credentials.BearerToken).To(Equal("deploy-s3cret"))
	})

	It("keeps other pipelines running when one is stalled", func() {
		Expect(k8sClient.Create(ctx, builders.Sink(ns, "out").Stdout().Build())).To(Succeed())
		good := builders.Pipeline(ns, "good", "out").Build()
		bad := builders.Pipeline(ns, "bad", "out", "missing").Build()
		Expect(k8sClient.Create(ctx, bad)).To(Succeed())
		Expect(k8sClient.Create(ctx, good)).To(Succeed())
		Eventually(condition(client.ObjectKeyFromObject(good), logsv1alpha1.ConditionReady), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonWorkersRunning))
		Eventually(condition(client.ObjectKeyFromObject(bad), logsv1alpha1.ConditionReady), timeout, interval).
			Should(haveReason(metav1.ConditionFalse, logsv1alpha1.ReasonSinkNotFound))
		Expect(condition(client.ObjectKeyFromObject(bad), logsv1alpha1.ConditionReady)(Default).Message).
			To(ContainSubstring(`1 of 2 SinkTargets do not exist`))
	})

	It("stops the workers while suspended and restarts them when resumed", func() {
		Expect(k8sClient.Create(ctx, builders.Sink(ns, "out").File("app/out.log").Build())).To(Succeed())
		p := builders.Pipeline(ns, "app", "out").Build()
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		key := client.ObjectKeyFromObject(p)
		Eventually(condition(key, logsv1alpha1.ConditionReady), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonWorkersRunning))

		Expect(k8sClient.Get(ctx, key, p)).To(Succeed())
		p.Spec.Suspend = true
		Expect(k8sClient.Update(ctx, p)).To(Succeed())
		Eventually(condition(key, logsv1alpha1.ConditionReady), timeout, interval).
			Should(haveReason(metav1.ConditionFalse, logsv1alpha1.ReasonSuspended))
		_, ok := workers.config(key)
		Expect(ok).To(BeFalse())
		// Not Ready, not stalled: kstatus reads Ready=False as InProgress.
		Eventually(kstatusOf(key), timeout, interval).Should(Equal(status.InProgressStatus))

		Expect(k8sClient.Get(ctx, key, p)).To(Succeed())
		p.Spec.Suspend = false
		Expect(k8sClient.Update(ctx, p)).To(Succeed())
		Eventually(condition(key, logsv1alpha1.ConditionReady), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonWorkersRunning))
		cfg, ok := workers.config(key)
		Expect(ok).To(BeTrue())
		Expect(cfg.Sinks[0].File.Path).To(Equal("app/out.log"))
	})

	It("removes the workers and the finalizer on deletion", func() {
		Expect(k8sClient.Create(ctx, builders.Sink(ns, "out").Stdout().Build())).To(Succeed())
		p := builders.Pipeline(ns, "app", "out").Build()
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		key := client.ObjectKeyFromObject(p)
		Eventually(func(g Gomega) []string {
			got := &logsv1alpha1.LogPipeline{}
			g.Expect(k8sClient.Get(ctx, key, got)).To(Succeed())
			return got.Finalizers
		}, timeout, interval).Should(ContainElement(controllers.Finalizer))
		_, removesBefore := workers.counts(key)

		Expect(k8sClient.Delete(ctx, p)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, key, &logsv1alpha1.LogPipeline{}))
		}, timeout, interval).Should(BeTrue())
		_, removes := workers.counts(key)
		Expect(removes).To(BeNumerically(">", removesBefore))
		_, ok := workers.config(key)
		Expect(ok).To(BeFalse())
	})

	It("starts no worker before the finalizer is stored, and leaves none behind when deleted then", func() {
		Expect(k8sClient.Create(ctx, builders.Sink(ns, "out").Stdout().Build())).To(Succeed())
		key := types.NamespacedName{Namespace: ns, Name: "unfinalized"}
		finalizerFaults.set(key, true)
		defer finalizerFaults.set(key, false)
		p := builders.Pipeline(ns, key.Name, "out").Build()
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		// Reconciles fail on the finalizer and are retried; no worker runs meanwhile.
		Consistently(func() bool { _, ok := workers.config(key); return ok }, 2*time.Second, interval).Should(BeFalse())
		applies, _ := workers.counts(key)
		Expect(applies).To(BeZero())
		// Had workers started anyway (as they did before the finalizer was
		// stored first), the reconcile of the key that no longer exists
		// stops them: without a finalizer the object goes at once.
		Expect(workers.Apply(ctx, key, capture.PipelineConfig{Namespace: ns, Name: key.Name})).To(Succeed())
		_, removesBefore := workers.counts(key)
		Expect(k8sClient.Delete(ctx, p)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, key, &logsv1alpha1.LogPipeline{}))
		}, timeout, interval).Should(BeTrue())
		Eventually(func() int { _, r := workers.counts(key); return r }, timeout, interval).Should(BeNumerically(">", removesBefore))
		_, ok := workers.config(key)
		Expect(ok).To(BeFalse(), "no worker is left for a deleted pipeline")
	})

	It("shows a hand-over as Ready=Unknown/HandingOver, Reconciling, and becomes Ready when it is done", func() {
		Expect(k8sClient.Create(ctx, builders.Sink(ns, "out").Stdout().Build())).To(Succeed())
		key := types.NamespacedName{Namespace: ns, Name: "handover"}
		workers.setHandingOver(key, true)
		Expect(k8sClient.Create(ctx, builders.Pipeline(ns, key.Name, "out").Build())).To(Succeed())
		Eventually(condition(key, logsv1alpha1.ConditionReady), timeout, interval).
			Should(haveReason(metav1.ConditionUnknown, logsv1alpha1.ReasonHandingOver))
		Expect(condition(key, logsv1alpha1.ConditionReconciling)(Default)).To(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonHandingOver))
		Eventually(kstatusOf(key), timeout, interval).Should(Equal(status.InProgressStatus))
		workers.setHandingOver(key, false)
		Eventually(condition(key, logsv1alpha1.ConditionReady), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonWorkersRunning))
		Expect(condition(key, logsv1alpha1.ConditionReconciling)(Default)).To(BeNil())
	})

	It("keeps the finalizer while a deleted pipeline's workers still stop", func() {
		Expect(k8sClient.Create(ctx, builders.Sink(ns, "out").Stdout().Build())).To(Succeed())
		p := builders.Pipeline(ns, "slowstop", "out").Build()
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		key := client.ObjectKeyFromObject(p)
		Eventually(condition(key, logsv1alpha1.ConditionReady), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonWorkersRunning))
		workers.stopSlowly(key, 2)
		Expect(k8sClient.Delete(ctx, p)).To(Succeed())
		Eventually(condition(key, logsv1alpha1.ConditionReconciling), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonDeleting))
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, key, &logsv1alpha1.LogPipeline{}))
		}, timeout, interval).Should(BeTrue(), "the finalizer goes once the workers stopped")
	})

	It("refuses a rotation interval below the operator's minimum with the numbers", func() {
		Expect(k8sClient.Create(ctx, builders.Sink(ns, "out").Stdout().Build())).To(Succeed())
		key := types.NamespacedName{Namespace: ns, Name: "fast"}
		Expect(k8sClient.Create(ctx, builders.Pipeline(ns, key.Name, "out").With(func(p *logsv1alpha1.LogPipeline) {
			p.Spec.Rotation.Interval = metav1.Duration{Duration: time.Second}
		}).Build())).To(Succeed())
		Eventually(condition(key, logsv1alpha1.ConditionStalled), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonOutsideOperatorLimits))
		Expect(condition(key, logsv1alpha1.ConditionReady)(Default).Message).To(ContainSubstring("1s is shorter than the operator's minimum of 2s"))
		_, running := workers.config(key)
		Expect(running).To(BeFalse())
	})

	It("reports a failing runtime as Reconciling and retries", func() {
		Expect(k8sClient.Create(ctx, builders.Sink(ns, "out").Stdout().Build())).To(Succeed())
		key := types.NamespacedName{Namespace: ns, Name: "app"}
		workers.fail(key, errApply)
		Expect(k8sClient.Create(ctx, builders.Pipeline(ns, "app", "out").Build())).To(Succeed())
		Eventually(condition(key, logsv1alpha1.ConditionReconciling), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonApplyFailed))
		Expect(condition(key, logsv1alpha1.ConditionReady)(Default).Message).To(ContainSubstring("injected apply failure"))
		Eventually(kstatusOf(key), timeout, interval).Should(Equal(status.InProgressStatus))

		workers.fail(key, nil)
		Eventually(condition(key, logsv1alpha1.ConditionReady), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonWorkersRunning))
		Expect(condition(key, logsv1alpha1.ConditionReconciling)(Default)).To(BeNil())
	})

	It("does not write status when nothing changed", func() {
		sec := builders.Secret(ns, "token", map[string]string{"token": "t"})
		Expect(k8sClient.Create(ctx, sec)).To(Succeed())
		Expect(k8sClient.Create(ctx, builders.Sink(ns, "out").HTTP("https://collector:8443/ingest").WithBearerToken("token", "token").Build())).To(Succeed())
		p := builders.Pipeline(ns, "app", "out").Build()
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		key := client.ObjectKeyFromObject(p)
		Eventually(condition(key, logsv1alpha1.ConditionReady), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonWorkersRunning))
		// Let the reconciles that the create caused settle.
		Consistently(func() int { return writes.get(key) }, time.Second, interval).Should(BeNumerically(">=", 1))
		statusWrites := writes.get(key)
		applies, _ := workers.counts(key)

		// Touching the Secret's labels reconciles the pipeline without changing anything.
		for i := range 5 {
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sec), sec)).To(Succeed())
			sec.Labels = map[string]string{"touch": string(rune('a' + i))}
			Expect(k8sClient.Update(ctx, sec)).To(Succeed())
			Eventually(func() int { a, _ := workers.counts(key); return a }, timeout, interval).Should(BeNumerically(">", applies))
			applies, _ = workers.counts(key)
		}
		Expect(writes.get(key)).To(Equal(statusWrites), "reconciles that change nothing write no status")
	})
})

var _ = Describe("Rejected batches", func() {
	It("become Warning Events on the SinkTarget, also with a 2000-byte server message", func() {
		ns := newNamespace()
		Expect(k8sClient.Create(ctx, builders.Sink(ns, "loki").Loki("http://loki:3100").Build())).To(Succeed())
		long := "loki rejected a batch: " + strings.Repeat("entry too far behind; ", 90) // > 2000 bytes
		Expect(len(long)).To(BeNumerically(">", 2000))
		start := time.Now()
		rejects.Record(ns+"/app", "loki", long)
		Expect(time.Since(start)).To(BeNumerically("<", 50*time.Millisecond), "Record does not wait for the API server")
		Eventually(func(g Gomega) *eventsv1.Event {
			list := &eventsv1.EventList{}
			g.Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			for i := range list.Items {
				if e := &list.Items[i]; e.Reason == controllers.ReasonBatchRejected {
					return e
				}
			}
			return nil
		}, timeout, interval).Should(And(Not(BeNil()),
			HaveField("Type", corev1.EventTypeWarning),
			HaveField("Regarding.Name", "loki"),
			HaveField("Note", And(HavePrefix("loki rejected a batch: entry too far behind"), HaveSuffix("…[truncated]"),
				WithTransform(func(s string) int { return len(s) }, BeNumerically("<=", 1024))))))
	})
})

var _ = Describe("SinkTarget controller", func() {
	It("reports an unreachable endpoint with the probe's error", func() {
		ns := newNamespace()
		st := builders.Sink(ns, "loki").Loki("http://unreachable.example:3100").Build()
		Expect(k8sClient.Create(ctx, st)).To(Succeed())
		Eventually(func(g Gomega) *logsv1alpha1.SinkTarget {
			got := &logsv1alpha1.SinkTarget{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(st), got)).To(Succeed())
			return got
		}, timeout, interval).Should(And(
			HaveField("Status.LastError", ContainSubstring("connection refused")),
			HaveField("Status.Type", logsv1alpha1.SinkTypeLoki),
			HaveField("Status.Conditions", ContainElement(And(
				HaveField("Type", logsv1alpha1.ConditionReady),
				HaveField("Status", metav1.ConditionFalse),
				HaveField("Reason", logsv1alpha1.ReasonEndpointUnreachable)))),
		))
	})
})
