package controllers_test

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/capture"
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
				NamespaceSelector: *logsv1alpha1.SelectorFromMap(map[string]string{"policy-test": ns}),
				DestinationHosts:  []string{"*.monitoring.svc"},
				LokiTenantIDs:     []string{"{namespace}"},
				DestinationCIDRs:  []string{"10.20.0.0/16", "2001:db8::/32"},
			}}
		bad := pol.DeepCopy()
		bad.Name, bad.Spec.DestinationHosts = "bad-"+ns, []string{"http://loki:3100"}
		err := k8sClient.Create(ctx, bad)
		Expect(err).To(HaveOccurred(), "a URL is not a host glob")
		Expect(err.Error()).To(ContainSubstring("spec.destinationHosts[0]"))
		bad.Spec.DestinationHosts, bad.Spec.DestinationCIDRs = nil, []string{"10.20.0.0/33"}
		err = k8sClient.Create(ctx, bad)
		Expect(err).To(HaveOccurred(), "a /33 is no IPv4 range")
		Expect(err.Error()).To(ContainSubstring("every entry must be an address range such as 10.0.0.0/8"))
		Expect(k8sClient.Create(ctx, pol)).To(Succeed())
		got := &logsv1alpha1.CapturePolicy{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(pol), got)).To(Succeed())
		Expect(got.Spec.SinkTypes).To(ConsistOf(logsv1alpha1.PolicySinkType("Loki"), logsv1alpha1.PolicySinkType("HTTP"), logsv1alpha1.PolicySinkType("OTLP"), logsv1alpha1.PolicySinkType("Kafka"), logsv1alpha1.PolicySinkType("Elasticsearch"), logsv1alpha1.PolicySinkType("OpenSearch"), logsv1alpha1.PolicySinkType("S3")), "the default leaves Stdout and File to admins")

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
		// The policy's ranges go with the sink, to be checked when it connects.
		cfg, running := workers.config(types.NamespacedName{Namespace: ns, Name: "ok"})
		Expect(running).To(BeTrue())
		Expect(cfg.Sinks[0].Egress).To(Equal(&capture.EgressPolicy{Policy: "tenants-" + ns, AllowCIDRs: []string{"10.20.0.0/16", "2001:db8::/32"}}))
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

	It("applies the policy's limits in place of the operator's flags, to its namespaces only", func() {
		ns, other := newNamespace(), newNamespace()
		pol := &logsv1alpha1.CapturePolicy{ObjectMeta: metav1.ObjectMeta{Name: "limits-" + ns},
			Spec: logsv1alpha1.CapturePolicySpec{
				NamespaceSelector: *logsv1alpha1.SelectorFromMap(map[string]string{"kubernetes.io/metadata.name": ns}),
				SinkTypes:         []logsv1alpha1.PolicySinkType{"Loki", "File"},
				Limits: &logsv1alpha1.PolicyLimits{
					MaxStreams:          ptr.To[int32](3),
					MinRotationInterval: &metav1.Duration{Duration: time.Hour},
					MaxBufferBytes:      ptr.To(resource.MustParse("8Mi")), // the default fits
					FileQuota:           ptr.To(resource.MustParse("100Mi")),
				},
			}}
		for _, bad := range []struct {
			mutate func(*logsv1alpha1.PolicyLimits)
			msg    string
		}{
			{func(l *logsv1alpha1.PolicyLimits) { l.MaxStreams = ptr.To[int32](0) }, "spec.limits.maxStreams"},
			{func(l *logsv1alpha1.PolicyLimits) {
				l.MinRotationInterval = &metav1.Duration{Duration: time.Millisecond}
			}, "limits.minRotationInterval must be between 1s and 24h"},
			{func(l *logsv1alpha1.PolicyLimits) { l.MaxBufferBytes = ptr.To(resource.MustParse("2Gi")) }, "limits.maxBufferBytes must be between 1Ki and 1Gi"},
			{func(l *logsv1alpha1.PolicyLimits) { l.FileQuota = ptr.To(resource.MustParse("1")) }, "limits.fileQuota must be at least 1Ki"},
		} {
			p := pol.DeepCopy()
			p.Name = "bad-" + p.Name
			bad.mutate(p.Spec.Limits)
			err := k8sClient.Create(ctx, p)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(bad.msg))
		}
		Expect(k8sClient.Create(ctx, pol)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, pol))).To(Succeed()) })

		for _, n := range []string{ns, other} {
			Expect(k8sClient.Create(ctx, builders.Sink(n, "file").File("a.log").Build())).To(Succeed())
			Expect(k8sClient.Create(ctx, builders.Sink(n, "big").Loki("http://loki.monitoring.svc:3100").With(func(s *logsv1alpha1.SinkTarget) {
				s.Spec.Buffer.MaxBytes = resource.MustParse("16Mi")
			}).Build())).To(Succeed())
			Expect(k8sClient.Create(ctx, builders.Pipeline(n, "ok", "file").With(func(p *logsv1alpha1.LogPipeline) {
				p.Spec.Rotation.Interval = metav1.Duration{Duration: 2 * time.Hour}
			}).Build())).To(Succeed())
			Expect(k8sClient.Create(ctx, builders.Pipeline(n, "fast", "file").With(func(p *logsv1alpha1.LogPipeline) {
				p.Spec.Rotation.Interval = metav1.Duration{Duration: 30 * time.Second}
			}).Build())).To(Succeed())
			Expect(k8sClient.Create(ctx, builders.Pipeline(n, "big", "big").With(func(p *logsv1alpha1.LogPipeline) {
				p.Spec.Rotation.Interval = metav1.Duration{Duration: 2 * time.Hour}
			}).Build())).To(Succeed())
		}

		// Under the policy: its stream limit and file quota travel with the
		// configuration; a fast rotation and a big buffer stall, named.
		Eventually(condition(types.NamespacedName{Namespace: ns, Name: "ok"}, logsv1alpha1.ConditionReady), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonWorkersRunning))
		cfg, _ := workers.config(types.NamespacedName{Namespace: ns, Name: "ok"})
		Expect(cfg.NamespaceMaxStreams).To(Equal(3))
		Eventually(func(g Gomega) string {
			p := &logsv1alpha1.LogPipeline{}
			g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fast"}, p)).To(Succeed())
			return p.Status.Policy
		}, timeout, interval).Should(Equal(pol.Name), "status names the policy, a stalled pipeline's too")
		Expect(cfg.Sinks[0].File.NamespaceQuota).To(Equal(int64(100 << 20)))
		Expect(cfg.Sinks[0].File.QuotaPolicy).To(Equal(pol.Name))
		Eventually(condition(types.NamespacedName{Namespace: ns, Name: "fast"}, logsv1alpha1.ConditionStalled), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonPolicyViolation))
		msg := condition(types.NamespacedName{Namespace: ns, Name: "fast"}, logsv1alpha1.ConditionReady)(Default).Message
		Expect(msg).To(ContainSubstring(`spec.rotation.interval 30s is shorter than the minimum of 1h0m0s that CapturePolicy "` + pol.Name + `"`))
		Eventually(condition(types.NamespacedName{Namespace: ns, Name: "big"}, logsv1alpha1.ConditionStalled), timeout, interval).
			Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonPolicyViolation))
		msg = condition(types.NamespacedName{Namespace: ns, Name: "big"}, logsv1alpha1.ConditionReady)(Default).Message
		Expect(msg).To(ContainSubstring("allows at most 8Mi of spec.buffer.maxBytes per sink (limits.maxBufferBytes); this SinkTarget asks for 16Mi"))

		// The namespace beside it, under no policy, has only the flags:
		// everything runs, with the operator's limits.
		for _, name := range []string{"ok", "fast", "big"} {
			Eventually(condition(types.NamespacedName{Namespace: other, Name: name}, logsv1alpha1.ConditionReady), timeout, interval).
				Should(haveReason(metav1.ConditionTrue, logsv1alpha1.ReasonWorkersRunning), name)
		}
		cfg, _ = workers.config(types.NamespacedName{Namespace: other, Name: "ok"})
		Expect(cfg.NamespaceMaxStreams).To(BeZero())
		p := &logsv1alpha1.LogPipeline{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: other, Name: "ok"}, p)).To(Succeed())
		Expect(p.Status.Policy).To(BeEmpty())
		Expect(cfg.Sinks[0].File.NamespaceQuota).To(BeZero())
		Expect(cfg.Sinks[0].Egress).To(BeNil())
	})
})
