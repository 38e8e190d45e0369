//go:build e2e

package e2e_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
)

// helmRun runs this tree's Helm against the e2e cluster.
func helmRun(args ...string) string {
	c := exec.Command(os.Getenv("E2E_HELM"), append(args, "--kubeconfig", kubecfg)...)
	tmp := GinkgoT().TempDir()
	c.Env = append(os.Environ(), "HELM_CACHE_HOME="+tmp, "HELM_CONFIG_HOME="+tmp, "HELM_DATA_HOME="+tmp)
	out, err := c.CombinedOutput()
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "helm %s: %s", strings.Join(args, " "), out)
	return string(out)
}

// images are the images of the operator's Deployment and the agents'
// DaemonSet.
func images() (operator, agent string) {
	d := &appsv1.Deployment{}
	ExpectWithOffset(1, k8sClient.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: "log-capturer"}, d)).To(Succeed())
	ds := &appsv1.DaemonSet{}
	ExpectWithOffset(1, k8sClient.Get(ctx, client.ObjectKey{Namespace: agentNS, Name: "log-capturer-agent"}, ds)).To(Succeed())
	return d.Spec.Template.Spec.Containers[0].Image, ds.Spec.Template.Spec.Containers[0].Image
}

// restarts sums the container restarts of the operator's and agents' pods.
func restarts() int32 {
	var n int32
	for _, namespace := range []string{operatorNS, agentNS} {
		pods := &corev1.PodList{}
		ExpectWithOffset(1, k8sClient.List(ctx, pods, client.InNamespace(namespace))).To(Succeed())
		for _, p := range pods.Items {
			for _, s := range p.Status.ContainerStatuses {
				n += s.RestartCount
			}
		}
	}
	return n
}

// agentHostAliases is the agents' address of the operator: hostAliases
// resolve it, for this node has no cluster DNS.
func agentHostAliases() string {
	svc := &corev1.Service{}
	ExpectWithOffset(1, k8sClient.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: "log-capturer-agents"}, svc)).To(Succeed())
	b, err := json.Marshal([]corev1.HostAlias{{IP: svc.Spec.ClusterIP, Hostnames: []string{"log-capturer-agents." + operatorNS + ".svc"}}})
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return string(b)
}

// patchAgentHostAliases gives the running DaemonSet the agentHostAliases
// that an install from dist/ lacks.
func patchAgentHostAliases() {
	run("-n", agentNS, "patch", "daemonset/log-capturer-agent", "--type=strategic", "-p",
		fmt.Sprintf(`{"spec":{"template":{"spec":{"hostAliases":%s}}}}`, agentHostAliases()))
}

// upgradeWithHelm installs the previous release (its dist/install.yaml and
// image) over the running install, starts writers fast enough that the
// kubelet rotates their logs, and while they write upgrades to this tree's
// chart with helm, taking the objects over: the new operator reads the old
// one's positions and the new agent the old one's journal. Every line
// arrives once; then helm uninstall leaves only what docs/install.md says.
func upgradeWithHelm() {
	By("installing the previous release from its dist/install.yaml")
	run("apply", "--server-side", "--force-conflicts", "-f", os.Getenv("E2E_PREVIOUS_INSTALL"))
	patchAgentHostAliases()
	run("-n", operatorNS, "rollout", "status", "deployment/log-capturer", "--timeout=180s")
	run("-n", agentNS, "rollout", "status", "daemonset/log-capturer-agent", "--timeout=180s")
	op, ag := images()
	Expect(op).To(Equal("log-capturer:previous"))
	Expect(ag).To(Equal("log-capturer:previous"))
	Eventually(func() int { return podsIn(operatorNS, map[string]string{"app.kubernetes.io/component": "operator"}) }, 90*time.Second, time.Second).
		Should(Equal(1))
	Eventually(func() bool { p := agentPod(); return p != nil && podReady(p) }, 90*time.Second, time.Second).Should(BeTrue())

	// ~270 bytes a line at 400 lines/s: a 1Mi log rotates every ~10 s.
	w := writer("upgraded", 2, 32000, 400)
	w.Namespace = agentLogs
	Expect(k8sClient.Create(ctx, w)).To(Succeed())
	upgraded := func() map[string]*instance {
		out := map[string]*instance{}
		for id, in := range receivedIn(agentLogs) {
			if strings.HasPrefix(in.pod, "upgraded") {
				out[id] = in
			}
		}
		return out
	}
	lines := func() int {
		n := 0
		for _, in := range upgraded() {
			for _, seqs := range in.streams {
				n += len(seqs)
			}
		}
		return n
	}
	Eventually(lines, 90*time.Second, time.Second).Should(BeNumerically(">=", 2000), "the previous release's agent reads the writers")
	restartsBefore := restarts()

	By("helm upgrade --install to this tree's chart while the writers write")
	atUpgrade := lines()
	out := helmRun("upgrade", "--install", "log-capturer", os.Getenv("E2E_CHART"), "--namespace", operatorNS,
		"--take-ownership", "--server-side=true", "--force-conflicts",
		"--set", "image.tag=dev", "--set-json", "agent.hostAliases="+agentHostAliases(),
		"--wait", "--timeout", "5m")
	GinkgoWriter.Println(out)
	op, ag = images()
	Expect(op).To(Equal("log-capturer:dev"))
	Expect(ag).To(Equal("log-capturer:dev"))
	run("-n", operatorNS, "rollout", "status", "deployment/log-capturer", "--timeout=180s")
	run("-n", agentNS, "rollout", "status", "daemonset/log-capturer-agent", "--timeout=180s")
	afterUpgrade := lines()
	Expect(podsDoneIn(agentLogs, map[string]string{"writer": "upgraded"})()).To(BeNumerically("<", 2),
		"the writers still wrote when the upgrade was done")
	Expect(helmRun("status", "log-capturer", "--namespace", operatorNS)).To(ContainSubstring("STATUS: deployed"))

	By("waiting for the writers to finish: every line once, none excused")
	Eventually(podsDoneIn(agentLogs, map[string]string{"writer": "upgraded"}), 4*time.Minute, 2*time.Second).Should(Equal(2))
	check := func() []string { return problems(upgraded(), 1000, nil) }
	Eventually(check, 90*time.Second, 2*time.Second).Should(BeEmpty())
	Consistently(check, 5*time.Second, time.Second).Should(BeEmpty())
	Expect(upgraded()).To(HaveLen(2))
	Expect(restarts()).To(Equal(restartsBefore), "no container restarted; only the rolled pods are new")
	Eventually(func() string { return string(agentCondition(logsv1alpha1.ConditionReady).Status) }, 2*time.Minute, 2*time.Second).Should(Equal("True"))
	Eventually(func() string { return agentCondition(logsv1alpha1.ConditionFlowHealthy).Reason }, 2*time.Minute, 2*time.Second).
		Should(BeElementOf(logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonIdle))
	Eventually(func() string { return agentCondition(logsv1alpha1.ConditionWorkersHealthy).Reason }, 2*time.Minute, 2*time.Second).
		Should(Equal(logsv1alpha1.ReasonHealthy))
	ws := agentPipeline().Status.Workers
	GinkgoWriter.Printf("upgrade: 64000 lines once across the upgrade (%d delivered when helm began, %d when it was done); rotated files %d; fileContainers=%d\n",
		atUpgrade, afterUpgrade, agentRotatedFiles(), ws.FileContainers)

	// The writers' containers stay running after their last line; gone,
	// the fresh install below has no old log to start over on.
	for _, namespace := range []string{ns, agentLogs} {
		run("-n", namespace, "delete", "deployment", "--all", "--wait", "--timeout=120s")
	}

	By("helm uninstall")
	helmRun("uninstall", "log-capturer", "--namespace", operatorNS, "--wait", "--timeout", "3m")
	Eventually(func() bool {
		err := k8sClient.Get(ctx, client.ObjectKey{Name: agentNS}, &corev1.Namespace{})
		return apierrors.IsNotFound(err)
	}, 3*time.Minute, 2*time.Second).Should(BeTrue(), "the agents' namespace is gone")
	Eventually(func() int { return podsIn(operatorNS, map[string]string{"app.kubernetes.io/name": "log-capturer"}) }, 2*time.Minute, time.Second).
		Should(BeZero())
	// Kept, as docs/install.md says: the CRDs and the users' objects.
	for _, name := range []string{"logpipelines.logs.capturer.dev", "sinktargets.logs.capturer.dev", "capturepolicies.logs.capturer.dev"} {
		crd := &metav1.PartialObjectMetadata{}
		crd.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: name}, crd)).To(Succeed(), "CRD %s kept", name)
	}
	Expect(agentPipeline()).NotTo(BeNil())
	// Gone: every object the chart installed.
	for _, l := range []client.ObjectList{&appsv1.DeploymentList{}, &appsv1.DaemonSetList{}, &corev1.ServiceList{}, &corev1.ServiceAccountList{},
		&rbacv1.RoleList{}, &rbacv1.RoleBindingList{}, &rbacv1.ClusterRoleList{}, &rbacv1.ClusterRoleBindingList{}} {
		Expect(k8sClient.List(ctx, l, client.MatchingLabels{"app.kubernetes.io/part-of": "log-capturer"})).To(Succeed())
		items, err := meta.ExtractList(l)
		Expect(err).NotTo(HaveOccurred())
		Expect(items).To(BeEmpty(), "%T left after helm uninstall", l)
	}
	// What the operator wrote stays in the release's namespace (helm does
	// not delete a namespace): positions, for a reinstall to resume from,
	// its agent endpoint's authority and its leader lease; nothing else.
	cms := &corev1.ConfigMapList{}
	Expect(k8sClient.List(ctx, cms, client.InNamespace(operatorNS))).To(Succeed())
	for _, cm := range cms.Items {
		Expect(cm.Name).To(Or(Equal("kube-root-ca.crt"), HaveSuffix("-positions")), "ConfigMap %s left", cm.Name)
	}
	secrets := &corev1.SecretList{}
	Expect(k8sClient.List(ctx, secrets, client.InNamespace(operatorNS))).To(Succeed())
	for _, s := range secrets.Items {
		Expect(s.Name).To(Equal("log-capturer-agent-tls"), "Secret %s left", s.Name)
	}
	// The agent removed its journal's files as its DaemonSet went.
	left, _ := filepath.Glob("/var/lib/log-capturer/agent/*")
	dots, _ := filepath.Glob("/var/lib/log-capturer/agent/.*")
	Expect(append(left, dots...)).To(BeEmpty(), "the agent's journal removed from the node")
	GinkgoWriter.Printf("after helm uninstall: CRDs and LogPipelines kept, %d ConfigMaps and %d Secrets of the operator's in %s, no journal file on the node\n",
		len(cms.Items), len(secrets.Items), operatorNS)

	By("helm install into the kept namespace, then helm upgrade with new values")
	helmRun("install", "log-capturer", os.Getenv("E2E_CHART"), "--namespace", operatorNS, "--set", "image.tag=dev")
	// The agents reach the operator's new Service through hostAliases:
	// its address is known only now.
	Eventually(func() error {
		return k8sClient.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: "log-capturer-agents"}, &corev1.Service{})
	}, time.Minute, time.Second).Should(Succeed())
	helmRun("upgrade", "log-capturer", os.Getenv("E2E_CHART"), "--namespace", operatorNS, "--reuse-values",
		"--set", "agent.memoryBudget=64Mi", "--set-json", "agent.hostAliases="+agentHostAliases(), "--wait", "--timeout", "5m")
	run("-n", agentNS, "rollout", "status", "daemonset/log-capturer-agent", "--timeout=180s")
	ds := &appsv1.DaemonSet{}
	Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: agentNS, Name: "log-capturer-agent"}, ds)).To(Succeed())
	Expect(ds.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--memory-budget=64Mi"))
	fresh := writer("fresh", 1, 3000, 300)
	fresh.Namespace = agentLogs
	Expect(k8sClient.Create(ctx, fresh)).To(Succeed())
	freshOnly := func() []string {
		out := map[string]*instance{}
		for id, in := range receivedIn(agentLogs) {
			if strings.HasPrefix(in.pod, "fresh") {
				out[id] = in
			}
		}
		if len(out) != 1 {
			return []string{fmt.Sprintf("%d instances of the fresh writer", len(out))}
		}
		return problems(out, 1000, nil)
	}
	Eventually(podsDoneIn(agentLogs, map[string]string{"writer": "fresh"}), 3*time.Minute, 2*time.Second).Should(Equal(1))
	Eventually(freshOnly, time.Minute, 2*time.Second).Should(BeEmpty())
	Eventually(func() int32 {
		if w := agentPipeline().Status.Workers; w != nil {
			return w.FileContainers
		}
		return -1
	}, 2*time.Minute, 2*time.Second).Should(Equal(int32(1)), "the agent of the fresh install reads the new writer, and only it")
	Eventually(func() string { return string(agentCondition(logsv1alpha1.ConditionReady).Status) }, 2*time.Minute, 2*time.Second).Should(Equal("True"))
	helmRun("uninstall", "log-capturer", "--namespace", operatorNS, "--wait", "--timeout", "3m")
	Eventually(func() bool {
		return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKey{Name: agentNS}, &corev1.Namespace{}))
	}, 3*time.Minute, 2*time.Second).Should(BeTrue(), "the agents' namespace is gone again")
	GinkgoWriter.Println("fresh helm install and helm upgrade --reuse-values: 3000 lines of a new writer once, Ready; uninstalled again")
}
