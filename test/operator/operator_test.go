package operator_test

import (
	"fmt"
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

var _ = Describe("The operator", func() {
	It("captures the selected pods' logs into Loki and reports Ready", func() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "op-"}}
		Expect(k8sClient.Create(ctx, ns)).To(Succeed())
		const pods, lines = 3, 200
		for i := range pods {
			name := fmt.Sprintf("web-%d", i)
			kubelet.Container(ns.Name, name, "app")
			Expect(k8sClient.Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name, Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "app", Image: "web"}}},
			})).To(Succeed())
		}
		Expect(k8sClient.Create(ctx, builders.Secret(ns.Name, "loki-token", map[string]string{"token": "s3cret"}))).To(Succeed())
		Expect(k8sClient.Create(ctx, builders.Sink(ns.Name, "loki").Loki(lokiURL).WithBearerToken("loki-token", "token").
			With(func(s *logsv1alpha1.SinkTarget) {
				s.Spec.Batch.MaxWait = metav1.Duration{Duration: 100 * time.Millisecond}
			}).Build())).To(Succeed())
		p := builders.Pipeline(ns.Name, "web", "loki").WithSelector(map[string]string{"app": "web"}).With(func(p *logsv1alpha1.LogPipeline) {
			p.Spec.StartAt = logsv1alpha1.StartAtBeginning
			p.Spec.Rotation.Interval = metav1.Duration{Duration: 2 * time.Second}
		}).Build()
		Expect(k8sClient.Create(ctx, p)).To(Succeed())

		Eventually(func(g Gomega) *metav1.Condition {
			got := &logsv1alpha1.LogPipeline{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), got)).To(Succeed())
			return meta.FindStatusCondition(got.Status.Conditions, logsv1alpha1.ConditionReady)
		}, 30*time.Second, 200*time.Millisecond).Should(And(Not(BeNil()), HaveField("Status", metav1.ConditionTrue)))

		for i := range pods {
			c := kubelet.Container(ns.Name, fmt.Sprintf("web-%d", i), "app")
			for n := range lines {
				c.Write(time.Now(), fmt.Sprintf("web-%d line %d", i, n))
			}
		}
		count := func() int {
			n := 0
			for _, e := range loki.Entries() {
				if e.Labels["namespace"] == ns.Name {
					n++
				}
			}
			return n
		}
		Eventually(count, 30*time.Second, 200*time.Millisecond).Should(Equal(pods * lines))
		Consistently(count, 2*time.Second, 200*time.Millisecond).Should(Equal(pods * lines))
		Expect(loki.Problems()).To(BeEmpty())
		last := loki.Headers()[len(loki.Headers())-1]
		Expect(last.Get("Authorization")).To(Equal("Bearer s3cret"))

		Eventually(func(g Gomega) *metav1.Condition {
			st := &logsv1alpha1.SinkTarget{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "loki"}, st)).To(Succeed())
			return meta.FindStatusCondition(st.Status.Conditions, logsv1alpha1.ConditionReady)
		}, 30*time.Second, 200*time.Millisecond).Should(And(Not(BeNil()), HaveField("Status", metav1.ConditionTrue)))
	})
})
