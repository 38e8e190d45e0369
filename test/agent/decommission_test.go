package agent_test

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

// agentDaemonSet creates the agents' DaemonSet in the suite's agent
// namespace (envtest runs no controller: it creates no pods).
func agentDaemonSet() *appsv1.DaemonSet {
	labels := map[string]string{"app.kubernetes.io/component": "agent"}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: agentNS, Name: "log-capturer-agent"},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{ServiceAccountName: agentSA, Containers: []corev1.Container{{Name: "agent", Image: "x"}}}}}}
	ExpectWithOffset(1, c.Create(ctx, ds)).To(Succeed())
	DeferCleanup(func() { _ = c.Delete(ctx, ds) })
	return ds
}

// ownedAgentToken creates an agent pod on the suite's node that ds
// controls, writes a token bound to it into dir and returns its path and
// the pod.
func ownedAgentToken(dir string, ds *appsv1.DaemonSet) (string, *corev1.Pod) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: agentNS, GenerateName: "log-capturer-agent-",
		Labels:          ds.Spec.Template.Labels,
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ds, appsv1.SchemeGroupVersion.WithKind("DaemonSet"))}},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: agentSA, Containers: []corev1.Container{{Name: "agent", Image: "x"}}}}
	path := podToken(dir, p)
	DeferCleanup(func() { _ = c.Delete(ctx, p) })
	return path, p
}

// dirNames lists the names in dir.
func dirNames(dir string) []string {
	entries, err := os.ReadDir(dir)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

var _ = Describe("the node agent's uninstall", func() {
	It("keeps its journal on the node while its DaemonSet remains, and removes its own files of it once the DaemonSet is deleted", func() {
		tmp := GinkgoT().TempDir()
		podsDir, journal := filepath.Join(tmp, "pods"), filepath.Join(tmp, "journal")
		receiver := lokireceiver.New()
		rsrv := httptest.NewServer(receiver)
		DeferCleanup(func() { receiver.Close(); rsrv.Close() })
		ds := agentDaemonSet()
		token, pod := ownedAgentToken(tmp, ds)
		agentPod = types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
		DeferCleanup(func() { agentPod = types.NamespacedName{} })

		web := podOnNode("shop", "decommission-web", map[string]string{"app": "decommission"})
		webDir := filepath.Join(podsDir, "shop_decommission-web_"+string(web.UID), "main")
		writePodLines(webDir, "decommission-web", 0, 500)
		key := types.NamespacedName{Namespace: "shop", Name: "decommission"}
		book.Apply(key, capture.PipelineConfig{
			Namespace: "shop", Name: "decommission", UID: "decommission-uid", RotationInterval: 2 * time.Second, MaxStreams: 5, StartFromBeginning: true,
			PositionsInterval: 200 * time.Millisecond,
			Selector:          &metav1.LabelSelector{MatchLabels: map[string]string{"app": "decommission"}},
			Sinks: []capture.SinkConfig{{Name: "loki", Kind: capture.SinkLoki, BatchMaxBytes: 64 << 10, BatchMaxWait: 50 * time.Millisecond,
				BufferMaxBytes: 1 << 20, WhenFull: "Block", MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
				Loki: &capture.LokiConfig{URL: rsrv.URL}}},
		})
		DeferCleanup(func() { book.Remove(key) })
		Expect(os.MkdirAll(journal, 0o700)).To(Succeed())
		// Not the agent's: it stays whatever happens.
		stray := filepath.Join(journal, "notes.txt")
		Expect(os.WriteFile(stray, []byte("an admin's file"), 0o600)).To(Succeed())
		const posFile = "shop.decommission.pos"

		By("the DaemonSet remains (a rolling update, a restart): the journal stays for the next agent")
		stop := runAgent(podsDir, journal, token)
		Eventually(receiver.Len, 30*time.Second, 100*time.Millisecond).Should(Equal(500))
		Eventually(func() []string { return dirNames(journal) }, 10*time.Second, 100*time.Millisecond).Should(ContainElement(posFile))
		Expect(stop()).To(Succeed())
		Expect(dirNames(journal)).To(ConsistOf("LOCK", posFile, "notes.txt"))

		By("a new agent resumes from the kept journal: nothing read twice")
		writePodLines(webDir, "decommission-web", 500, 800)
		stop = runAgent(podsDir, journal, token)
		Eventually(receiver.Len, 30*time.Second, 100*time.Millisecond).Should(Equal(800))
		Consistently(receiver.Len, time.Second, 100*time.Millisecond).Should(Equal(800))

		By("the DaemonSet deleted (an uninstall), the agent stops: its journal files are gone, the stray file stays")
		Expect(c.Delete(ctx, ds)).To(Succeed())
		Expect(stop()).To(Succeed())
		Expect(dirNames(journal)).To(ConsistOf("notes.txt"))
		Expect(os.ReadFile(stray)).To(Equal([]byte("an admin's file")))
		Expect(writes.Load()).To(BeZero(), "the agent wrote to the API server")
		GinkgoWriter.Printf("uninstall: %d lines once across a kept journal; after the DaemonSet's deletion the journal directory holds %v\n",
			receiver.Len(), dirNames(journal))
	})
})
