package controllers_test

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/test/builders"
)

var _ = Describe("CapturePolicy", func() {
	It("stalls what the namespace's policy does not allow, names the policy, and lets it run when the policy goes", func() {
		ns := newNamespace()
		n := &corev1.Namespace{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Name: ns}, n)).To(Succeed())
		n.Labels = map[string]string{"policy-test": ns}
		Expect(k8sClient.Update(ctx, n)).To(Succeed())
		pol := &logsv1alpha1.CapturePolicy{ObjectMeta: metav1.ObjectMeta{Name: "tenants-" + ns},
			Spec: logsv1alpha1.CapturePolicySpec{
				NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"policy-test": ns}},
				DestinationHosts:  []string{"*.monitoring.svc"},
				LokiTenantIDs:     []string{"{namespace}"},
			}}
		bad := pol.DeepCopy()
		bad.Name, bad.Spec.DestinationHosts = "bad-"+ns, []string{"http://loki:3100"}
		err := k8sClient.Create(ctx, bad)
		Expect(err).To(HaveOccurred(), "a URL is not a host glob")
		Expect(err.Error()).To(ContainSubstring("spec.destinationHosts[0]"))
		Expect(k8sClient.Create(ctx, pol)).To(Succeed())
		got := &logsv1alpha1.CapturePolicy{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(pol), got)).To(Succeed())
		Expect(got.Spec.SinkTypes).To(ConsistOf(logsv1alpha1.PolicySinkType("Loki"), logsv1alpha1.PolicySinkType("HTTP")), "the default leaves Stdout and File to admins")

		// A File sink, a Loki of another tenant, and a Loki the policy allows.
		Expect(k8sClient.Create(ctx, builders.Sink(ns, "file").File("a.log").Build())).To(Succeed())
		Expect(k8sClient.Create(ctx, builders.Sink(ns, "other-tenant").Loki("http://loki.monitoring.svc:3100").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Loki.TenantID = "kube-system"
		}).Build())).To(Succeed())
		Expect(k8sClient.Create(ctx, builders.Sink(ns, "ok").Loki("http://loki.monitoring.svc:3100").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Loki.TenantID = ns
		}).Build())).To(Succeed())
		for _, name := range []string{"file", "other-tenant", "ok"} {
			Expect(k8sClient.Create(ctx, builders.Pipeline(ns, name, name).Build())).To(Succeed())
		}
		Eventually(condition(types.NamespacedName{Namespace: ns, Name: "file"}, logsv1alpha1.ConditionStalled), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonPolicyViolation))
		msg := condition(types.NamespacedName{Namespace: ns, Name: "file"}, logsv1alpha1.ConditionReady)(Default).Message
		Expect(msg).To(ContainSubstring(`CapturePolicy "tenants-` + ns + `"`))
		Expect(msg).To(ContainSubstring("does not allow File sinks"))
		Eventually(condition(types.NamespacedName{Namespace: ns, Name: "other-tenant"}, logsv1alpha1.ConditionStalled), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonPolicyViolation))
		Eventually(condition(types.NamespacedName{Namespace: ns, Name: "ok"}, logsv1alpha1.ConditionReady), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonWorkersRunning))
		_, running := workers.config(types.NamespacedName{Namespace: ns, Name: "file"})
		Expect(running).To(BeFalse())
		Eventually(func(g Gomega) string {
			st := &logsv1alpha1.SinkTarget{}
			g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "file"}, st)).To(Succeed())
			c := meta.FindStatusCondition(st.Status.Conditions, logsv1alpha1.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			return st.Status.Policy + " " + c.Reason
		}, timeout, interval).Should(Equal("tenants-" + ns + " " + logsv1alpha1.ReasonPolicyViolation))

		// The policy goes: the watch re-reconciles, and the File sink runs.
		Expect(k8sClient.Delete(ctx, pol)).To(Succeed())
		Eventually(condition(types.NamespacedName{Namespace: ns, Name: "file"}, logsv1alpha1.ConditionReady), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonWorkersRunning))
		Eventually(func(g Gomega) bool {
			st := &logsv1alpha1.SinkTarget{}
			g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "file"}, st)).To(Succeed())
			return strings.TrimSpace(st.Status.Policy) == ""
		}, timeout, interval).Should(BeTrue())
	})
})
