package operator_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/test/builders"
)

var _ = Describe("The shipped default sink types", func() {
	It("leave File and Stdout sinks to the admin where no CapturePolicy applies, and a policy allows them", func() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "defaults-"}}
		Expect(k8sClient.Create(ctx, ns)).To(Succeed())
		DeferCleanup(func() { _ = k8sClient.Delete(ctx, ns) })
		Expect(k8sClient.Create(ctx, builders.Sink(ns.Name, "file").File("app.log").Build())).To(Succeed())
		Expect(k8sClient.Create(ctx, builders.Sink(ns.Name, "out").Stdout().Build())).To(Succeed())
		for _, name := range []string{"file", "out"} {
			p := builders.Pipeline(ns.Name, name, name).Build()
			Expect(k8sClient.Create(ctx, p)).To(Succeed())
			DeferCleanup(func() { _ = k8sClient.Delete(ctx, p) })
		}
		ready := func(name string) func(Gomega) *metav1.Condition {
			return func(g Gomega) *metav1.Condition {
				got := &logsv1alpha1.LogPipeline{}
				g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: name}, got)).To(Succeed())
				return meta.FindStatusCondition(got.Status.Conditions, logsv1alpha1.ConditionReady)
			}
		}
		for name, typ := range map[string]string{"file": "File", "out": "Stdout"} {
			Eventually(ready(name), 30*time.Second, 200*time.Millisecond).Should(And(
				HaveField("Reason", logsv1alpha1.ReasonOutsideOperatorLimits),
				HaveField("Message", ContainSubstring(`No CapturePolicy applies to namespace "`+ns.Name+`", so the operator's default sink types apply (--default-sink-types: Loki, HTTP, OTLP, Kafka, Elasticsearch, OpenSearch, S3), which leave `+typ+` sinks to the cluster admin`))))
		}

		pol := &logsv1alpha1.CapturePolicy{ObjectMeta: metav1.ObjectMeta{Name: "admins-" + ns.Name},
			Spec: logsv1alpha1.CapturePolicySpec{
				NamespaceSelector: *logsv1alpha1.SelectorFromMap(map[string]string{"kubernetes.io/metadata.name": ns.Name}),
				SinkTypes:         []logsv1alpha1.PolicySinkType{"File", "Stdout"},
			}}
		Expect(k8sClient.Create(ctx, pol)).To(Succeed())
		DeferCleanup(func() { _ = k8sClient.Delete(ctx, pol) })
		for _, name := range []string{"file", "out"} {
			Eventually(ready(name), 30*time.Second, 200*time.Millisecond).Should(HaveField("Status", metav1.ConditionTrue), name)
		}
	})
})
