package validation_test

import (
	"fmt"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/log-capturer/log-capturer/test/envtestutil"
)

// access is one question put to the API server's authorizer.
type access struct {
	verb, group, resource, subresource, namespace string
	allowed                                       bool
}

func (a access) String() string {
	r := a.resource
	if a.subresource != "" {
		r += "/" + a.subresource
	}
	if a.group != "" {
		r += "." + a.group
	}
	where := "cluster-wide"
	if a.namespace != "" {
		where = "in " + a.namespace
	}
	return fmt.Sprintf("%s %s %s", a.verb, r, where)
}

// canI asks the API server, as `kubectl auth can-i --as` does, whether the
// user may do a.
func canI(user string, groups []string, a access) bool {
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user, Groups: groups,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource, Namespace: a.namespace,
		},
	}}
	ExpectWithOffset(1, k8sClient.Create(ctx, sar)).To(Succeed())
	return sar.Status.Allowed
}

// expectAccess checks a table of accesses for one user. The authorizer
// learns of new roles and bindings from a watch, so the allowed ones are
// awaited (the table lists them first); once they hold, the denied ones
// are asked of an authorizer that knows every binding.
func expectAccess(user string, groups []string, table []access) {
	for _, a := range table {
		if a.allowed {
			EventuallyWithOffset(1, func() bool { return canI(user, groups, a) }).Should(BeTrue(), "%s may %s", user, a)
			continue
		}
		ExpectWithOffset(1, canI(user, groups, a)).To(BeFalse(), "%s may not %s", user, a)
	}
}

// installRBAC creates, for real, the ServiceAccount, roles and bindings of
// dist/install-api.yaml, so that the authorizer answers with them.
func installRBAC() {
	root, err := envtestutil.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	for _, u := range readManifests(filepath.Join(root, "dist", "install-api.yaml")) {
		switch u.GetKind() {
		case "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
		default:
			continue
		}
		Expect(client.IgnoreAlreadyExists(k8sClient.Create(ctx, u.DeepCopy()))).To(Succeed(), "%s %s", u.GetKind(), u.GetName())
	}
}

var _ = Describe("the installed RBAC, asked through SubjectAccessReview", Ordered, func() {
	const (
		operatorNS = "log-capturer-system"
		operatorSA = "system:serviceaccount:" + operatorNS + ":log-capturer"
		tenant     = "rbac-team-a"
		other      = "rbac-team-b"
	)
	var saGroups []string

	BeforeAll(func() {
		saGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + operatorNS, "system:authenticated"}
		installRBAC()
		for _, n := range []string{tenant, other} {
			Expect(client.IgnoreAlreadyExists(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}))).To(Succeed())
		}
		// A namespace admin delegates the pipeline roles the Kubernetes way:
		// the installed aggregated ClusterRoles bound in one namespace.
		for user, role := range map[string]string{"alice": "log-capturer-edit", "victor": "log-capturer-view"} {
			Expect(client.IgnoreAlreadyExists(k8sClient.Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: user},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
				Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}},
			}))).To(Succeed())
		}
		// In a cluster the edit role aggregates both; envtest runs no
		// aggregation controller (the real-node e2e checks aggregation), so
		// alice gets the two roles edit aggregates.
		Expect(client.IgnoreAlreadyExists(k8sClient.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "alice-view"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "log-capturer-view"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "alice"}},
		}))).To(Succeed())
	})

	It("lets the operator's ServiceAccount do what it needs and nothing that makes it cluster-admin", func() {
		table := []access{
			// What it needs.
			{verb: "get", resource: "secrets", namespace: tenant, allowed: true},
			{verb: "get", resource: "pods", subresource: "log", namespace: tenant, allowed: true},
			{verb: "watch", resource: "pods", namespace: tenant, allowed: true},
			{verb: "get", resource: "namespaces", allowed: true},
			{verb: "list", group: "logs.capturer.dev", resource: "logpipelines", allowed: true},
			{verb: "patch", group: "logs.capturer.dev", resource: "logpipelines", subresource: "status", namespace: tenant, allowed: true},
			{verb: "list", group: "logs.capturer.dev", resource: "capturepolicies", allowed: true},
			{verb: "create", group: "events.k8s.io", resource: "events", namespace: tenant, allowed: true},
			{verb: "create", resource: "configmaps", namespace: operatorNS, allowed: true},
			{verb: "update", resource: "configmaps", namespace: operatorNS, allowed: true},
			// What it must not have.
			{verb: "list", resource: "secrets", namespace: tenant},
			{verb: "watch", resource: "secrets", namespace: tenant},
			{verb: "list", resource: "secrets"},
			{verb: "create", resource: "secrets", namespace: tenant},
			{verb: "create", resource: "configmaps", namespace: "kube-system"},
			{verb: "update", resource: "configmaps", namespace: tenant},
			{verb: "delete", resource: "configmaps", namespace: tenant},
			{verb: "create", resource: "pods", namespace: tenant},
			{verb: "create", resource: "pods", subresource: "exec", namespace: tenant},
			{verb: "delete", resource: "pods", namespace: tenant},
			{verb: "create", resource: "serviceaccounts", subresource: "token", namespace: tenant},
			{verb: "update", group: "logs.capturer.dev", resource: "sinktargets", namespace: tenant},
			{verb: "create", group: "logs.capturer.dev", resource: "capturepolicies"},
			{verb: "update", group: "logs.capturer.dev", resource: "capturepolicies"},
			{verb: "create", group: "rbac.authorization.k8s.io", resource: "clusterrolebindings"},
			{verb: "escalate", group: "rbac.authorization.k8s.io", resource: "clusterroles"},
			{verb: "impersonate", resource: "users"},
			{verb: "update", group: "apps", resource: "deployments", namespace: operatorNS},
			{verb: "get", resource: "nodes", subresource: "proxy"},
		}
		expectAccess(operatorSA, saGroups, table)
	})

	It("lets a user bound to the edit role in one namespace manage pipelines there only, and never policies", func() {
		table := []access{
			{verb: "create", group: "logs.capturer.dev", resource: "logpipelines", namespace: tenant, allowed: true},
			{verb: "delete", group: "logs.capturer.dev", resource: "sinktargets", namespace: tenant, allowed: true},
			{verb: "get", group: "logs.capturer.dev", resource: "logpipelines", subresource: "status", namespace: tenant, allowed: true},
			{verb: "create", group: "logs.capturer.dev", resource: "logpipelines", namespace: other},
			{verb: "list", group: "logs.capturer.dev", resource: "logpipelines", namespace: other},
			{verb: "patch", group: "logs.capturer.dev", resource: "logpipelines", subresource: "status", namespace: tenant},
			{verb: "create", group: "logs.capturer.dev", resource: "capturepolicies"},
			{verb: "get", resource: "secrets", namespace: tenant},
		}
		expectAccess("alice", []string{"system:authenticated"}, table)
		expectAccess("victor", []string{"system:authenticated"}, []access{
			{verb: "list", group: "logs.capturer.dev", resource: "sinktargets", namespace: tenant, allowed: true},
			{verb: "get", group: "logs.capturer.dev", resource: "sinktargets", subresource: "status", namespace: tenant, allowed: true},
			{verb: "create", group: "logs.capturer.dev", resource: "logpipelines", namespace: tenant},
			{verb: "update", group: "logs.capturer.dev", resource: "sinktargets", namespace: tenant},
		})
	})

	It("lets only the metrics reader role scrape /metrics", func() {
		nonResource := func(user string) bool {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: user, Groups: []string{"system:authenticated"},
				NonResourceAttributes: &authorizationv1.NonResourceAttributes{Verb: "get", Path: "/metrics"},
			}}
			Expect(k8sClient.Create(ctx, sar)).To(Succeed())
			return sar.Status.Allowed
		}
		Expect(nonResource("alice")).To(BeFalse(), "a tenant may not read every tenant's metrics")
		Expect(client.IgnoreAlreadyExists(k8sClient.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "rbac-test-prometheus"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "log-capturer-metrics-reader"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "prometheus"}},
		}))).To(Succeed())
		Eventually(func() bool { return nonResource("prometheus") }).Should(BeTrue())
	})
})
