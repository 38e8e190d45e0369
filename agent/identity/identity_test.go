package identity_test

import (
	"context"
	"errors"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/log-capturer/log-capturer/agent/identity"
	"github.com/log-capturer/log-capturer/test/envtestutil"
)

func TestIdentity(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Agent identity suite")
}

const (
	agentNS = "log-capturer-system"
	agentSA = "log-capturer-agent"
)

var (
	ctx context.Context
	c   client.Client
	cs  *kubernetes.Clientset
)

var _ = BeforeSuite(func() {
	ctx = context.Background()
	env, cfg, cl, err := envtestutil.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(env.Stop)
	c = cl
	cs, err = kubernetes.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())
	Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentNS}})).To(Succeed())
	Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tenant"}})).To(Succeed())
	for _, sa := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: agentNS, Name: agentSA}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: agentNS, Name: "other"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant", Name: agentSA}},
	} {
		Expect(c.Create(ctx, sa)).To(Succeed())
	}
	for _, n := range []string{"node-a", "node-b"} {
		Expect(c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}})).To(Succeed())
	}
})

// pod creates a pod of the ServiceAccount namespace/sa scheduled to node.
func pod(namespace, name, sa, node string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PodSpec{ServiceAccountName: sa, NodeName: node,
			Containers: []corev1.Container{{Name: "agent", Image: "log-capturer:dev"}}},
	}
	ExpectWithOffset(1, c.Create(ctx, p)).To(Succeed())
	return p
}

// token asks for a token of the pod's ServiceAccount, bound to the pod
// unless p is nil.
func token(namespace, sa string, p *corev1.Pod, audience string) string {
	tok, err := envtestutil.PodToken(ctx, cs, namespace, sa, p, audience)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return tok
}

// countingReviews counts the TokenReviews the Verifier makes.
type countingReviews struct {
	client.Client
	n int
}

func (r *countingReviews) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	r.n++
	return r.Client.Create(ctx, obj, opts...)
}

var _ = Describe("Verifier", func() {
	It("takes the node from the API server's review of a pod-bound token, and refuses another node", func() {
		p := pod(agentNS, "agent-a", agentSA, "node-a")
		reviews := &countingReviews{Client: c}
		v := identity.NewVerifier(reviews, agentNS, agentSA, time.Minute)
		a, err := v.Verify(ctx, token(agentNS, agentSA, p, identity.Audience))
		Expect(err).NotTo(HaveOccurred())
		node := &corev1.Node{}
		Expect(c.Get(ctx, client.ObjectKey{Name: "node-a"}, node)).To(Succeed())
		Expect(a).To(Equal(identity.Agent{Node: "node-a", NodeUID: string(node.UID), Pod: "agent-a", PodUID: string(p.UID)}))
		Expect(identity.Authorize(a, "node-a")).To(Succeed())
		err = identity.Authorize(a, "node-b")
		Expect(errors.Is(err, identity.ErrRefused)).To(BeTrue())
		Expect(err).To(MatchError(ContainSubstring(`the agent of node "node-a" asked for node "node-b"`)))
	})

	It("asks the API server once per token within the TTL", func() {
		p := pod(agentNS, "agent-b", agentSA, "node-b")
		reviews := &countingReviews{Client: c}
		v := identity.NewVerifier(reviews, agentNS, agentSA, time.Minute)
		tok := token(agentNS, agentSA, p, identity.Audience)
		for range 5 {
			a, err := v.Verify(ctx, tok)
			Expect(err).NotTo(HaveOccurred())
			Expect(a.Node).To(Equal("node-b"))
		}
		Expect(reviews.n).To(Equal(1))
	})

	It("refuses tokens that are not a pod-bound agent token for its audience", func() {
		agentPod := pod(agentNS, "agent-c", agentSA, "node-a")
		otherPod := pod(agentNS, "other-c", "other", "node-a")
		tenantPod := pod("tenant", "tenant-c", agentSA, "node-a")
		v := identity.NewVerifier(c, agentNS, agentSA, time.Minute)
		for what, tc := range map[string]struct{ token, why string }{
			"empty":                {"", "no bearer token"},
			"garbage":              {"not-a-token", "did not authenticate"},
			"another audience":     {token(agentNS, agentSA, agentPod, "https://kubernetes.default.svc"), "did not authenticate"},
			"another account":      {token(agentNS, "other", otherPod, identity.Audience), "system:serviceaccount:log-capturer-system:other"},
			"same name, tenant":    {token("tenant", agentSA, tenantPod, identity.Audience), "system:serviceaccount:tenant:log-capturer-agent"},
			"not bound to its pod": {token(agentNS, agentSA, nil, identity.Audience), "must be a projected token of the agent's pod"},
		} {
			_, err := v.Verify(ctx, tc.token)
			Expect(err).To(HaveOccurred(), what)
			Expect(errors.Is(err, identity.ErrRefused)).To(BeTrue(), "%s: %v", what, err)
			Expect(err.Error()).To(ContainSubstring(tc.why), what)
		}
	})

	It("refuses the token of a deleted agent pod once the TTL passed", func() {
		p := pod(agentNS, "agent-d", agentSA, "node-a")
		tok := token(agentNS, agentSA, p, identity.Audience)
		v := identity.NewVerifier(c, agentNS, agentSA, 0) // ask every time
		_, err := v.Verify(ctx, tok)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.Delete(ctx, p, client.GracePeriodSeconds(0))).To(Succeed())
		Eventually(func() error { _, err := v.Verify(ctx, tok); return err }, 30*time.Second, 200*time.Millisecond).
			Should(MatchError(identity.ErrRefused))
	})
})
