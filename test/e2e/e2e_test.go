//go:build e2e

package e2e_test

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/test/builders"
)

const (
	operatorNS = "log-capturer-system"
	ns         = "e2e-logs"
	lineBytes  = 200
)

// writer is a Deployment of the log writer (hack/e2e/logger).
func writer(name string, replicas int32, lines, rate int) *appsv1.Deployment {
	labels := map[string]string{"app": "writer", "writer": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](5),
					Containers: []corev1.Container{{
						Name: "logger", Image: "e2e.local/logger:dev", ImagePullPolicy: corev1.PullNever,
						Env: []corev1.EnvVar{
							{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
							{Name: "LINES", Value: strconv.Itoa(lines)}, {Name: "RATE", Value: strconv.Itoa(rate)},
							{Name: "PAD", Value: strconv.Itoa(lineBytes)},
						},
					}},
				},
			},
		},
	}
}

// instance is what Loki received from one container instance: the
// sequence numbers in arrival order, per stream. The container runtime
// copies stdout and stderr into the log file independently, so only the
// order within a stream is defined.
type instance struct {
	pod     string
	streams map[string][]int
	done    int // lines announced by the done line, -1 without one
}

// received groups Loki's entries of the test namespace by container instance.
func received() map[string]*instance { return receivedIn(ns) }

// receivedIn groups Loki's entries of namespace by container instance.
func receivedIn(namespace string) map[string]*instance {
	var lines []string
	for _, e := range loki.Entries() {
		if e.Labels["namespace"] == namespace {
			lines = append(lines, e.Line)
		}
	}
	return instancesOf(lines)
}

// instancesOf groups the writers' lines by container instance.
func instancesOf(lines []string) map[string]*instance {
	out := map[string]*instance{}
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) < 3 || !strings.HasPrefix(f[1], "inst=") {
			continue
		}
		in := out[f[1]]
		if in == nil {
			in = &instance{pod: f[0], done: -1, streams: map[string][]int{}}
			out[f[1]] = in
		}
		switch {
		case f[2] == "done":
			in.done, _ = strconv.Atoi(strings.TrimPrefix(f[3], "lines="))
		case len(f) > 3 && strings.HasPrefix(f[3], "seq="):
			n, _ := strconv.Atoi(strings.TrimPrefix(f[3], "seq="))
			stream := strings.TrimPrefix(f[2], "stream=")
			in.streams[stream] = append(in.streams[stream], n)
		}
	}
	return out
}

// problems lists every instance whose lines are not 0..n-1 exactly once,
// in order within each stream (the writer sends every fifth to stderr);
// complete instances must have announced n. Lines in excused (per instance)
// may be missing: they are the kubelet's own loss, proven from its files.
func problems(got map[string]*instance, crashAfter int, excused map[string]map[int]bool) []string {
	var out []string
	for id, in := range got {
		seen := map[int]int{}
		last := -1
		for stream, seqs := range in.streams {
			for i, v := range seqs {
				seen[v]++
				last = max(last, v)
				if i > 0 && v <= seqs[i-1] {
					out = append(out, fmt.Sprintf("%s %s: %s seq %d after %d (duplicated or reordered)", in.pod, id, stream, v, seqs[i-1]))
				}
			}
		}
		want := last + 1
		switch {
		case in.done >= 0:
			want = in.done
		case strings.HasPrefix(in.pod, "crasher"):
			want = crashAfter
		}
		n := 0
		for v := range max(want, last+1) {
			switch {
			case seen[v] == 1:
				n++
			case seen[v] == 0 && excused[id][v]:
				n++
			default:
				out = append(out, fmt.Sprintf("%s %s: seq %d received %d times (of %d distinct)", in.pod, id, v, seen[v], len(seen)))
			}
		}
		if n != want && (in.done >= 0 || strings.HasPrefix(in.pod, "crasher")) {
			out = append(out, fmt.Sprintf("%s %s: %d lines accounted for, %d written", in.pod, id, n, want))
		}
	}
	return out
}

// kubeletLost finds the lines the kubelet itself lost while it followed a
// log across its own rotation, from the files it wrote: the kubelet's follow
// (k8s.io/cri-client pkg/logs ReadLogs) switches to the new 0.log as soon as
// it sees the file created, without reading what the runtime still wrote
// into the renamed file until it reopened. Such lines are the last ones of a
// rotated file, with nothing delivered after them in that file; a line
// missing anywhere else is ours and stays a problem. It returns the lines
// per instance and the rotated files they were in.
func kubeletLost(got map[string]*instance) (map[string]map[int]bool, []string) {
	delivered := map[string]map[int]bool{}
	for id, in := range got {
		delivered[id] = map[int]bool{}
		for _, seqs := range in.streams {
			for _, v := range seqs {
				delivered[id][v] = true
			}
		}
	}
	lost := map[string]map[int]bool{}
	var where []string
	for f, content := range rotated.all() {
		type line struct {
			id  string
			seq int
		}
		var lines []line
		for _, l := range content {
			// <time> <stream> <P|F> <pod> inst=<id> stream=<s> seq=<n> ...
			fs := strings.Fields(l)
			if len(fs) < 7 || !strings.HasPrefix(fs[4], "inst=") || !strings.HasPrefix(fs[6], "seq=") {
				continue
			}
			n, err := strconv.Atoi(strings.TrimPrefix(fs[6], "seq="))
			if err != nil {
				continue
			}
			lines = append(lines, line{id: fs[4], seq: n})
		}
		tail := len(lines)
		for tail > 0 && !delivered[lines[tail-1].id][lines[tail-1].seq] {
			tail--
		}
		for _, l := range lines[tail:] {
			if lost[l.id] == nil {
				lost[l.id] = map[int]bool{}
			}
			lost[l.id][l.seq] = true
		}
		if tail < len(lines) {
			where = append(where, fmt.Sprintf("%s: last %d of %d lines", filepath.Base(filepath.Dir(filepath.Dir(f)))+"/"+filepath.Base(f), len(lines)-tail, len(lines)))
		}
	}
	slices.Sort(where)
	return lost, where
}

// rotatedLogs keeps a copy of every rotated log file of the test namespace,
// taken while its pod runs: the kubelet removes a pod's log directory when
// the pod is deleted, and the lines its own follow lost at a rotation of a
// deleted pod's log can only be told from ours with the file's content.
type rotatedLogs struct {
	mu    sync.Mutex
	files map[string]rotatedCopy // by path, without a .gz suffix
}

// rotatedCopy is a rotated file's lines and the size they were read at.
type rotatedCopy struct {
	size  int64
	lines []string
}

var rotated = &rotatedLogs{files: map[string]rotatedCopy{}}

// keep copies the rotated files that are new or grew since the last copy:
// a file still being written (renamed, the runtime not yet reopened) is
// copied again, and a gzipped one is the final content of a file copied
// before, or copied once.
func (r *rotatedLogs) keep() {
	files, _ := filepath.Glob("/var/log/pods/" + ns + "_*/logger/*.log.*")
	for _, f := range files {
		key := strings.TrimSuffix(f, ".gz")
		st, err := os.Stat(f)
		if err != nil {
			continue // gzipped or deleted since the glob
		}
		r.mu.Lock()
		have, copied := r.files[key]
		r.mu.Unlock()
		gz := strings.HasSuffix(f, ".gz")
		if copied && (gz || st.Size() == have.size) {
			continue
		}
		lines := readLog(f)
		r.mu.Lock()
		if len(lines) >= len(r.files[key].lines) {
			r.files[key] = rotatedCopy{size: st.Size(), lines: lines}
		}
		r.mu.Unlock()
	}
}

// run copies the rotated files every half second until stop is closed.
func (r *rotatedLogs) run(stop <-chan struct{}) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		r.keep()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// all is every rotated file seen so far, by path.
func (r *rotatedLogs) all() map[string][]string {
	r.keep()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]string, len(r.files))
	for k, c := range r.files {
		out[k] = c.lines
	}
	return out
}

// readLog returns the lines of a kubelet log file, gzipped or not.
func readLog(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil
		}
		defer zr.Close()
		r = zr
	}
	b, _ := io.ReadAll(r)
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// gapMessage is the latest gap in a LogsUnrecoverable message.
var gapMessage = regexp.MustCompile(`the latest: ([^/\s]+)/([^/\s]+)/[^,\s]+, between (\S+) and (\S+) \(`)

// gapAtRotation checks that the latest gap of a LogsUnrecoverable message
// began at the last line of a file the kubelet rotated: the position was the
// end of that file, so nothing was lost there.
func gapAtRotation(message string) error {
	m := gapMessage.FindStringSubmatch(message)
	if m == nil {
		return fmt.Errorf("no gap in %q", message)
	}
	from, err := time.Parse(time.RFC3339Nano, m[3])
	if err != nil {
		return fmt.Errorf("gap start %q: %w", m[3], err)
	}
	var ends []string
	for f, content := range rotated.all() {
		if !strings.Contains(f, "/"+m[1]+"_"+m[2]+"_") || len(content) == 0 {
			continue
		}
		last := strings.Fields(content[len(content)-1])
		if len(last) == 0 {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, last[0])
		if err != nil {
			continue
		}
		if ts.Equal(from) {
			GinkgoWriter.Printf("the gap began at the last line of %s, which the kubelet rotated: nothing was lost\n", filepath.Base(f))
			return nil
		}
		ends = append(ends, filepath.Base(f)+" ends "+last[0])
	}
	slices.Sort(ends)
	return fmt.Errorf("the gap from %s in pod %s is not at the end of a rotated file (%s)", m[3], m[2], strings.Join(ends, "; "))
}

// reported keeps accounting() from printing the same excuse at every poll.
var reported = map[string]bool{}

// accounting is problems() with the lines excused that only a rotated file
// holds; it prints what it excused, once.
func accounting() []string {
	got := received()
	lost, where := kubeletLost(got)
	out := problems(got, 1000, lost)
	if len(where) > 0 && !reported[strings.Join(where, ";")] {
		reported[strings.Join(where, ";")] = true
		GinkgoWriter.Printf("lines only in a rotated file, never sent by pods/log: %s\n", strings.Join(where, "; "))
		// Did the operator see the loss? A reopen that found its last line
		// rotated away counts a gap and says so; the kubelet's own follow
		// dropping lines at its switch leaves nothing to see.
		c := exec.Command(kubectl, "--kubeconfig", kubecfg, "-n", operatorNS, "logs", "deployment/log-capturer")
		logs, _ := c.CombinedOutput()
		seen := 0
		for _, l := range strings.Split(string(logs), "\n") {
			if strings.Contains(l, "log lines were gone when capture resumed") {
				seen++
				GinkgoWriter.Println("  operator:", l)
			}
		}
		GinkgoWriter.Printf("  the operator counted %d gaps in its current log\n", seen)
	}
	return out
}

func pipeline() *logsv1alpha1.LogPipeline {
	p := &logsv1alpha1.LogPipeline{}
	ExpectWithOffset(1, k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "writers"}, p)).To(Succeed())
	return p
}

// condition returns the pipeline's condition t, empty while it has none.
func condition(t string) metav1.Condition {
	if c := meta.FindStatusCondition(pipeline().Status.Conditions, t); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// workers returns the pipeline's worker numbers, empty before the first report.
func workers() logsv1alpha1.WorkerStatus {
	if w := pipeline().Status.Workers; w != nil {
		return *w
	}
	return logsv1alpha1.WorkerStatus{}
}

func operatorPod() *corev1.Pod {
	pods := &corev1.PodList{}
	ExpectWithOffset(1, k8sClient.List(ctx, pods, client.InNamespace(operatorNS),
		client.MatchingLabels{"app.kubernetes.io/component": "operator"})).To(Succeed())
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			return p
		}
	}
	return nil
}

// rotatedFiles counts the kubelet's rotated log files of the namespace.
func rotatedFiles() int { return len(rotated.all()) }

// podsDone counts the pods matching selector whose writer said it is done.
func podsDone(selector map[string]string) func() int { return podsDoneIn(ns, selector) }

// podsDoneIn counts the pods of namespace matching selector whose writer
// said it is done.
func podsDoneIn(namespace string, selector map[string]string) func() int {
	return func() int {
		pods := &corev1.PodList{}
		Expect(k8sClient.List(ctx, pods, client.InNamespace(namespace), client.MatchingLabels(selector))).To(Succeed())
		names := map[string]bool{}
		for _, p := range pods.Items {
			names[p.Name] = true
		}
		n := 0
		for _, in := range receivedIn(namespace) {
			if names[in.pod] && in.done >= 0 {
				n++
			}
		}
		return n
	}
}

var _ = Describe("log-capturer on a real node", Ordered, func() {
	It("installs from dist/install-api.yaml and runs with its restricted security context", func() {
		run("apply", "--server-side", "-f", os.Getenv("E2E_INSTALL"))
		run("-n", operatorNS, "rollout", "status", "deployment/log-capturer", "--timeout=120s")
		p := operatorPod()
		Expect(p).NotTo(BeNil())
		Expect(p.Spec.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
		c := p.Spec.Containers[0].SecurityContext
		Expect(c.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
		Expect(c.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
		Expect(c.Capabilities.Drop).To(ContainElement(corev1.Capability("ALL")))
		Expect(p.Spec.ServiceAccountName).To(Equal("log-capturer"))
	})

	It("aggregates the pipeline roles into the cluster's view and edit roles, and keeps policies and Secrets from tenants", func() {
		const team = "e2e-rbac"
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: team}})).To(Succeed())
		for user, role := range map[string]string{"alice": "edit", "victor": "view"} {
			Expect(k8sClient.Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Namespace: team, Name: user},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
				Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}},
			})).To(Succeed())
		}
		canI := func(user string, args ...string) string {
			c := exec.Command(kubectl, append([]string{"--kubeconfig", kubecfg, "auth", "can-i", "--as", user}, args...)...)
			out, _ := c.Output() // "no" exits 1; warnings go to stderr
			return strings.TrimSpace(string(out))
		}
		// The controller-manager's aggregation controller fills edit and view.
		Eventually(func() string { return canI("alice", "create", "logpipelines.logs.capturer.dev", "-n", team) }, time.Minute, time.Second).Should(Equal("yes"))
		Eventually(func() string { return canI("victor", "list", "sinktargets.logs.capturer.dev", "-n", team) }, time.Minute, time.Second).Should(Equal("yes"))
		for _, q := range [][]string{
			{"alice", "create", "logpipelines.logs.capturer.dev", "-n", "default"},
			{"alice", "create", "capturepolicies.logs.capturer.dev"},
			{"alice", "patch", "logpipelines.logs.capturer.dev", "--subresource=status", "-n", team},
			{"victor", "create", "logpipelines.logs.capturer.dev", "-n", team},
			{"system:serviceaccount:" + operatorNS + ":log-capturer", "list", "secrets", "-n", team},
			{"system:serviceaccount:" + operatorNS + ":log-capturer", "create", "configmaps", "-n", "kube-system"},
		} {
			Expect(canI(q[0], q[1:]...)).To(Equal("no"), "kubectl auth can-i --as %s", strings.Join(q, " "))
		}
		Expect(canI("system:serviceaccount:"+operatorNS+":log-capturer", "get", "pods", "--subresource=log", "-n", team)).To(Equal("yes"))
	})

	It("delivers every line once across kubelet rotations, a crash, a deleted pod and a restarted operator", func() {
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		files := startFileCapture()
		stopCopies := make(chan struct{})
		var copies sync.WaitGroup
		copies.Go(func() { rotated.run(stopCopies) })
		DeferCleanup(func() { close(stopCopies); copies.Wait() })
		Expect(k8sClient.Create(ctx, builders.Sink(ns, "loki").Loki(lokiURL).With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Batch.MaxWait = metav1.Duration{Duration: 200 * time.Millisecond}
		}).Build())).To(Succeed())

		By("refusing the node's own address until a CapturePolicy names it")
		sinkMessage := func() string {
			st := &logsv1alpha1.SinkTarget{}
			Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "loki"}, st)).To(Succeed())
			if c := meta.FindStatusCondition(st.Status.Conditions, logsv1alpha1.ConditionReady); c != nil {
				return string(c.Status) + " " + c.Message
			}
			return ""
		}
		Eventually(sinkMessage, time.Minute, time.Second).Should(And(HavePrefix("False"), ContainSubstring("is an address of node")))
		Expect(k8sClient.Create(ctx, &logsv1alpha1.CapturePolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "e2e-node-receiver"},
			Spec: logsv1alpha1.CapturePolicySpec{
				NamespaceSelector: *logsv1alpha1.SelectorFromMap(map[string]string{"kubernetes.io/metadata.name": ns}),
				DestinationCIDRs:  []string{os.Getenv("E2E_NODE_IP") + "/32"},
			},
		})).To(Succeed())
		Eventually(sinkMessage, time.Minute, time.Second).Should(HavePrefix("True"))
		Expect(k8sClient.Create(ctx, builders.Pipeline(ns, "writers", "loki").WithSelector(map[string]string{"app": "writer"}).
			With(func(p *logsv1alpha1.LogPipeline) {
				p.Spec.StartAt = logsv1alpha1.StartAtBeginning
				p.Spec.Rotation.Interval = metav1.Duration{Duration: 20 * time.Second}
				p.Spec.Positions.WriteInterval = metav1.Duration{Duration: 2 * time.Second}
				p.Spec.Health.Window = metav1.Duration{Duration: time.Minute} // a verdict within the run
			}).Build())).To(Succeed())

		// ~270 bytes a line at 400 lines/s: a 1Mi log rotates every ~10 s.
		Expect(k8sClient.Create(ctx, writer("rotating", 2, 24000, 400))).To(Succeed())
		crasher := writer("crasher", 1, 3000, 200)
		crasher.Name = "crasher"
		crasher.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "state", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		crasher.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "state", MountPath: "/state"}}
		crasher.Spec.Template.Spec.Containers[0].Env = append(crasher.Spec.Template.Spec.Containers[0].Env,
			corev1.EnvVar{Name: "CRASH_AFTER", Value: "1000"}, corev1.EnvVar{Name: "MARKER", Value: "/state/crashed"})
		Expect(k8sClient.Create(ctx, crasher)).To(Succeed())

		Eventually(func() string { return string(condition(logsv1alpha1.ConditionReady).Status) }, 90*time.Second, time.Second).
			Should(Equal("True"))
		Eventually(func() int { return len(received()) }, 60*time.Second, time.Second).Should(BeNumerically(">=", 3))

		By("deleting the operator pod while lines flow")
		time.Sleep(15 * time.Second)
		old := operatorPod()
		Expect(old).NotTo(BeNil())
		Expect(k8sClient.Delete(ctx, old)).To(Succeed())
		Eventually(func() bool { p := operatorPod(); return p != nil && p.UID != old.UID }, 60*time.Second, time.Second).Should(BeTrue())

		By("deleting a writer pod mid-run")
		time.Sleep(5 * time.Second)
		pods := &corev1.PodList{}
		Expect(k8sClient.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"writer": "rotating"})).To(Succeed())
		Expect(pods.Items).NotTo(BeEmpty())
		Expect(k8sClient.Delete(ctx, &pods.Items[0])).To(Succeed())

		By("waiting for every writer still running to finish")
		Eventually(podsDone(map[string]string{"writer": "rotating"}), 4*time.Minute, 2*time.Second).Should(Equal(2))
		Eventually(podsDone(map[string]string{"writer": "crasher"}), 2*time.Minute, 2*time.Second).Should(Equal(1))
		Eventually(accounting, 60*time.Second, 2*time.Second).Should(BeEmpty())
		Consistently(accounting, 5*time.Second, time.Second).Should(BeEmpty())

		got := received()
		crashed, deleted := 0, 0
		for _, in := range got {
			if in.done < 0 && strings.HasPrefix(in.pod, "crasher") {
				crashed++
			}
			// Stopped mid-run, it said how many lines it wrote; problems()
			// checked that exactly those arrived.
			if in.pod == pods.Items[0].Name && in.done >= 0 {
				deleted++
			}
		}
		Expect(crashed).To(Equal(1), "the crashed instance's lines arrived")
		Expect(deleted).To(Equal(1), "every line the deleted pod wrote arrived")
		Expect(rotatedFiles()).To(BeNumerically(">=", 2), "the kubelet rotated the writers' logs")
		w := workers()
		GinkgoWriter.Printf("instances=%d rotations=%d lines=%d rotatedFiles=%d\n", len(got), w.Rotations, w.LinesTotal, rotatedFiles())

		By("reading the same writers from the kubelet's files: every line once, none excused")
		Eventually(func() []string { return problems(instancesOf(files.sink.all()), 1000, nil) }, 60*time.Second, 2*time.Second).
			Should(BeEmpty())
		fs := files.snapshot()
		Expect(fs.Gaps).To(BeZero())
		Expect(fs.MalformedLines).To(BeZero())
		GinkgoWriter.Printf("from the kubelet's files: instances=%d lines=%d sliceRotations=%d gaps=%d, nothing excused\n",
			len(instancesOf(files.sink.all())), fs.LinesTotal, fs.Rotations, fs.Gaps)
	})

	It("reports Ready and healthy workers and flow, and kubectl prints the columns", func() {
		Eventually(func() string { return string(condition(logsv1alpha1.ConditionReady).Status) }, time.Minute, time.Second).Should(Equal("True"))
		Eventually(func() string { return condition(logsv1alpha1.ConditionWorkersHealthy).Reason }, 3*time.Minute, 2*time.Second).
			Should(Equal(logsv1alpha1.ReasonHealthy))
		// When the kubelet's own follow lost lines at a rotation (excused
		// above, from its files) and the operator saw it, FlowHealthy says
		// LogsUnrecoverable for the health window (1 minute here), then
		// healthy again; anything else is a failure at once.
		// Through the API a reopen cannot read a file the kubelet rotated
		// while no stream was open, so a rotation right at a reopen counts a
		// gap even when the position was the file's last line and nothing
		// was lost; the rotated copies prove which it was.
		flow := condition(logsv1alpha1.ConditionFlowHealthy)
		if flow.Reason == logsv1alpha1.ReasonLogsUnrecoverable {
			GinkgoWriter.Printf("FlowHealthy: %s: %s\n", flow.Reason, flow.Message)
			if len(reported) == 0 {
				Expect(gapAtRotation(flow.Message)).To(Succeed(), "a loss reported while the accounting excused none")
			}
			Eventually(func() string { return condition(logsv1alpha1.ConditionFlowHealthy).Reason }, 2*time.Minute, 2*time.Second).
				Should(BeElementOf(logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonIdle))
		}
		Expect(condition(logsv1alpha1.ConditionFlowHealthy).Reason).To(BeElementOf(logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonIdle))
		Expect(condition(logsv1alpha1.ConditionPositionsStored).Reason).To(Equal(logsv1alpha1.ReasonPositionsStored))
		w := workers()
		Expect(w.SelectedContainers).To(Equal(int32(3)))
		Expect(w.LinesTotal).To(BeNumerically(">", 0))
		Expect(w.Rotations).To(BeNumerically(">", 0))
		Expect(w.Goroutines).To(BeNumerically(">", 0))
		Expect(w.OpenFileDescriptors).To(BeNumerically(">", 0))
		out := run("-n", ns, "get", "lp")
		Expect(out).To(And(ContainSubstring("READY"), ContainSubstring("STREAMS"), ContainSubstring("GOROUTINES"), ContainSubstring("FDS"), ContainSubstring("writers")))
		GinkgoWriter.Println(out)
	})

	It("captures every container when a Deployment scales from 2 to 20 and back, and returns to its goroutine and FD level", func() {
		Expect(k8sClient.Create(ctx, writer("scaled", 2, 1500, 150))).To(Succeed())
		Eventually(podsDone(map[string]string{"writer": "scaled"}), 2*time.Minute, 2*time.Second).Should(Equal(2))
		Eventually(func() int32 { return workers().SelectedContainers }, time.Minute, time.Second).Should(Equal(int32(5)))
		before := workers()

		d := &appsv1.Deployment{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "scaled"}, d)).To(Succeed())
		d.Spec.Replicas = ptr.To[int32](20)
		Expect(k8sClient.Update(ctx, d)).To(Succeed())
		Eventually(podsDone(map[string]string{"writer": "scaled"}), 4*time.Minute, 2*time.Second).Should(Equal(20))
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "scaled"}, d)).To(Succeed())
		d.Spec.Replicas = ptr.To[int32](2)
		Expect(k8sClient.Update(ctx, d)).To(Succeed())
		Eventually(accounting, time.Minute, 2*time.Second).Should(BeEmpty())

		Eventually(func() int32 { return workers().SelectedContainers }, 2*time.Minute, 2*time.Second).Should(Equal(int32(5)))
		Eventually(func() int32 { return workers().Goroutines }, 2*time.Minute, 2*time.Second).
			Should(BeNumerically("<=", before.Goroutines+2), "the pipeline's goroutines return to their level")
		Eventually(func() int32 { return workers().OpenFileDescriptors }, 2*time.Minute, 2*time.Second).
			Should(BeNumerically("<=", before.OpenFileDescriptors+5), "the process's FDs return to their level")
		after := workers()
		GinkgoWriter.Printf("before: goroutines=%d fds=%d; after: goroutines=%d fds=%d\n", before.Goroutines, before.OpenFileDescriptors, after.Goroutines, after.OpenFileDescriptors)
	})

	It("switches to node agents with dist/install.yaml, the agent running as root with no capability", switchToAgents)

	It("delivers every line once from the kubelet's files through the agent, across rotations, a deleted agent pod and a rolling update, with no pods/log request", agentCapture)

	It("reads the node through the API from the agent's last positions once the agents are removed (auto capture)", agentRemoved)

	It("upgrades from the previous release's dist/install.yaml to this chart with helm under load, every line once, and helm uninstall leaves only what the docs keep", upgradeWithHelm)
})
