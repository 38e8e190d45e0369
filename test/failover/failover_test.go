package failover_test

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/internal/operator"
	"github.com/log-capturer/log-capturer/test/builders"
)

// replica is one operator process; done is closed when it exited, with err.
type replica struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startReplica(name string) *replica {
	c := exec.Command(binary, "operator", "--kubeconfig", kubeconfig, "--leader-elect",
		"--leader-election-namespace", "default", "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--file-sink-root", GinkgoT().TempDir(), "--health-sample-period", "1s",
		"--allow-loopback-egress") // the Loki receiver runs on this host's loopback
	w := GinkgoWriter
	c.Stdout, c.Stderr = w, w
	Expect(c.Start()).To(Succeed())
	r := &replica{cmd: c, done: make(chan struct{})}
	go func() {
		r.err = c.Wait()
		close(r.done)
	}()
	DeferCleanup(func() {
		_ = c.Process.Kill()
		<-r.done
	})
	GinkgoWriter.Printf("replica %s is pid %d\n", name, c.Process.Pid)
	return r
}

func leaseHolder() string {
	l := &coordinationv1.Lease{}
	if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: "default", Name: operator.LeaderElectionID}, l); err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// writer writes numbered lines into simulated containers until stopped.
type writer struct {
	mu   sync.Mutex
	next map[string]int
	stop chan struct{}
	done chan struct{}
}

func startWriter(ns string, pods []string) *writer {
	w := &writer{next: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
			now := time.Now()
			w.mu.Lock()
			for _, p := range pods {
				c := kubelet.Container(ns, p, "app")
				for range 2 { // two lines share each timestamp
					c.Write(now, fmt.Sprintf("%s seq=%d", p, w.next[p]))
					w.next[p]++
				}
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *writer) halt() map[string]int {
	close(w.stop)
	<-w.done
	return w.next
}

// delivered returns each pod's sequence numbers as Loki received them.
func delivered(ns string) map[string][]int {
	out := map[string][]int{}
	for _, e := range loki.Entries() {
		if e.Labels["namespace"] != ns {
			continue
		}
		i := strings.Index(e.Line, " seq=")
		n, err := strconv.Atoi(e.Line[i+5:])
		if i < 0 || err != nil {
			continue
		}
		pod := e.Line[:i] // the line names its pod
		out[pod] = append(out[pod], n)
	}
	return out
}

var _ = Describe("Two replicas with leader election", func() {
	It("hand over on a stopped leader within the lease duration, and the new leader resumes from the stored positions", func() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "failover-"}}
		Expect(k8sClient.Create(ctx, ns)).To(Succeed())
		pods := []string{"web-0", "web-1", "web-2"}
		for _, name := range pods {
			kubelet.Container(ns.Name, name, "app")
			Expect(k8sClient.Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name, Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "app", Image: "web"}}},
			})).To(Succeed())
		}
		Expect(k8sClient.Create(ctx, builders.Sink(ns.Name, "loki").Loki(lokiURL).With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Batch.MaxWait = metav1.Duration{Duration: 200 * time.Millisecond}
		}).Build())).To(Succeed())
		p := builders.Pipeline(ns.Name, "web", "loki").WithSelector(map[string]string{"app": "web"}).With(func(p *logsv1alpha1.LogPipeline) {
			p.Spec.StartAt = logsv1alpha1.StartAtBeginning
			p.Spec.Rotation.Interval = metav1.Duration{Duration: 2 * time.Second}
			p.Spec.Positions.WriteInterval = metav1.Duration{Duration: time.Second}
		}).Build()
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		w := startWriter(ns.Name, pods)

		a := startReplica("a")
		Eventually(leaseHolder, 30*time.Second, 200*time.Millisecond).ShouldNot(BeEmpty())
		first := leaseHolder()
		Eventually(func() int { return len(delivered(ns.Name)) }, 30*time.Second, 200*time.Millisecond).Should(Equal(3))
		Eventually(func(g Gomega) string {
			got := &logsv1alpha1.LogPipeline{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), got)).To(Succeed())
			c := meta.FindStatusCondition(got.Status.Conditions, logsv1alpha1.ConditionPositionsStored)
			g.Expect(c).NotTo(BeNil())
			return c.Reason
		}, 30*time.Second, 200*time.Millisecond).Should(Equal(logsv1alpha1.ReasonPositionsStored))

		b := startReplica("b")
		time.Sleep(3 * time.Second)
		Expect(leaseHolder()).To(Equal(first), "the standby does not take the lease from a live leader")

		Expect(a.cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
		Eventually(a.done, 30*time.Second).Should(BeClosed())
		Expect(a.err).NotTo(HaveOccurred(), "the leader shuts down cleanly")
		stopped := time.Now()
		Eventually(leaseHolder, 15*time.Second, 100*time.Millisecond).ShouldNot(Or(Equal(first), BeEmpty()),
			"the standby takes over within the lease duration (15s)")
		GinkgoWriter.Printf("handover took %s\n", time.Since(stopped).Round(time.Millisecond))

		time.Sleep(3 * time.Second) // lines written under the new leader
		want := w.halt()
		Eventually(func() []string {
			var problems []string
			got := delivered(ns.Name)
			for _, pod := range pods {
				seq := got[pod]
				if len(seq) != want[pod] {
					problems = append(problems, fmt.Sprintf("%s: %d lines delivered, %d written", pod, len(seq), want[pod]))
					continue
				}
				for i, v := range seq {
					if v != i {
						problems = append(problems, fmt.Sprintf("%s: line %d is seq %d", pod, i, v))
						break
					}
				}
			}
			return problems
		}, 60*time.Second, 500*time.Millisecond).Should(BeEmpty(), "every line exactly once, in order, across the handover")
		Consistently(func() int { return len(loki.Entries()) }, 2*time.Second, 200*time.Millisecond).Should(Equal(want["web-0"] + want["web-1"] + want["web-2"]))

		Expect(b.cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
		Eventually(b.done, 30*time.Second).Should(BeClosed())
		Expect(b.err).NotTo(HaveOccurred())
	})
})
