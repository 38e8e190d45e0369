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

var _ = Describe("Secrets without a watch", func() {
	It("are read again: a pipeline stalled on a Secret runs once its owner consents, within the recheck", func() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "sec-"}}
		Expect(k8sClient.Create(ctx, ns)).To(Succeed())
		DeferCleanup(func() { _ = k8sClient.Delete(ctx, ns) })
		sec := builders.PrivateSecret(ns.Name, "loki-token", map[string]string{"token": "s3cret"})
		Expect(k8sClient.Create(ctx, sec)).To(Succeed())
		Expect(k8sClient.Create(ctx, builders.Sink(ns.Name, "loki").Loki(lokiURL).WithBearerToken("loki-token", "token").Build())).To(Succeed())
		p := builders.Pipeline(ns.Name, "web", "loki").Build()
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		DeferCleanup(func() { _ = k8sClient.Delete(ctx, p) })
		ready := func(g Gomega) *metav1.Condition {
			got := &logsv1alpha1.LogPipeline{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), got)).To(Succeed())
			return meta.FindStatusCondition(got.Status.Conditions, logsv1alpha1.ConditionReady)
		}
		Eventually(ready, 30*time.Second, 200*time.Millisecond).Should(HaveField("Reason", logsv1alpha1.ReasonSecretNotAllowed))

		sec.Annotations = map[string]string{logsv1alpha1.AnnotationSinkTargets: "loki"}
		Expect(k8sClient.Update(ctx, sec)).To(Succeed())
		start := time.Now()
		Eventually(ready, 45*time.Second, 200*time.Millisecond).Should(HaveField("Status", metav1.ConditionTrue))
		GinkgoWriter.Printf("secrets: consent seen %s after it was given, without a Secret watch\n", time.Since(start).Round(time.Second))
	})
})
