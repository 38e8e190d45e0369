package operator_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/test/builders"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

// benchEnv is the environment variable that runs the scale benchmark.
const benchEnv = "LOG_CAPTURER_BENCH"

// statusWrites follows LogPipelines through a watch: when each was first
// seen Ready=True, and when each status write (a MODIFIED event with a new
// resourceVersion whose status differs from the last one seen) arrived.
type statusWrites struct {
	mu      sync.Mutex
	last    map[types.NamespacedName]*logsv1alpha1.LogPipeline
	readyAt map[types.NamespacedName]time.Time
	writes  map[types.NamespacedName][]time.Time
	done    chan struct{}
}

// watchStatusWrites follows w until it ends.
func watchStatusWrites(w watch.Interface) *statusWrites {
	s := &statusWrites{last: map[types.NamespacedName]*logsv1alpha1.LogPipeline{},
		readyAt: map[types.NamespacedName]time.Time{}, writes: map[types.NamespacedName][]time.Time{},
		done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*logsv1alpha1.LogPipeline)
			if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) {
				continue
			}
			s.observe(ev.Type, p, time.Now())
		}
	}()
	return s
}

func (s *statusWrites) observe(t watch.EventType, p *logsv1alpha1.LogPipeline, now time.Time) {
	key := client.ObjectKeyFromObject(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.last[key]
	if t == watch.Modified && prev != nil && prev.ResourceVersion != p.ResourceVersion &&
		!equality.Semantic.DeepEqual(prev.Status, p.Status) {
		s.writes[key] = append(s.writes[key], now)
	}
	s.last[key] = p
	if _, seen := s.readyAt[key]; !seen && meta.IsStatusConditionTrue(p.Status.Conditions, logsv1alpha1.ConditionReady) {
		s.readyAt[key] = now
	}
}

// ready returns how many pipelines were seen Ready and when the last of
// them became Ready.
func (s *statusWrites) ready() (n int, last time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, at := range s.readyAt {
		if at.After(last) {
			last = at
		}
	}
	return len(s.readyAt), last
}

// between returns each pipeline's status writes in [from, to).
func (s *statusWrites) between(from, to time.Time) map[types.NamespacedName]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[types.NamespacedName]int{}
	for key := range s.last {
		for _, at := range s.writes[key] {
			if !at.Before(from) && at.Before(to) {
				out[key]++
			}
		}
	}
	return out
}

// BenchmarkApplyManyPipelines, as a spec: the suite owns the control plane,
// so the benchmark is a Ginkgo spec labelled "bench" that runs only when
// LOG_CAPTURER_BENCH=1 (make bench). It prints its numbers and their goals
// and asserts neither.
var _ = Describe("Scale", Label("bench"), func() {
	It("applies 200 pipelines in 20 namespaces: time to Ready and status writes per sample period", func() {
		if os.Getenv(benchEnv) != "1" {
			Skip("set " + benchEnv + "=1 (make bench) to run the scale benchmark")
		}
		const (
			namespaces, perNamespace = 20, 10
			total                    = namespaces * perNamespace
			samplePeriod             = time.Second // the suite's HealthSamplePeriod
			window                   = 30 * time.Second
			readyGoal                = 5 * time.Second
			writesGoal               = 1.0
		)
		rcv := lokireceiver.New()
		srv := httptest.NewServer(rcv)
		DeferCleanup(srv.Close)
		DeferCleanup(rcv.Close)

		run := strconv.FormatInt(time.Now().UnixNano(), 10)
		w, err := k8sClient.Watch(ctx, &logsv1alpha1.LogPipelineList{}, client.MatchingLabels{"bench": run})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(w.Stop)
		writes := watchStatusWrites(w)

		var nss, containers []string
		DeferCleanup(func() { deleteAllIn(nss, containers) })
		wctx, stopWriting := context.WithCancel(ctx)
		DeferCleanup(stopWriting)
		for range namespaces {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}}
			Expect(k8sClient.Create(ctx, ns)).To(Succeed())
			nss = append(nss, ns.Name)
			containers = append(containers, ns.Name+"/app-000")
			Expect(k8sClient.Create(ctx, builders.Sink(ns.Name, "loki").Loki(srv.URL).Build())).To(Succeed())
			makePods(ns.Name, 0, 1)
			writeLines(wctx, ns.Name, 1, 100*time.Millisecond)
		}

		// Every namespace creates its pipelines at once, all namespaces together.
		before := controllerStats("logpipeline")
		start := time.Now()
		var created sync.WaitGroup
		createErrs := make(chan error, total)
		for _, ns := range nss {
			created.Go(func() {
				for j := range perNamespace {
					p := pipeline(ns, fmt.Sprintf("p-%02d", j), "loki")
					p.Labels = map[string]string{"bench": run}
					if err := k8sClient.Create(ctx, p); err != nil {
						createErrs <- fmt.Errorf("creating %s/%s: %w", ns, p.Name, err)
					}
				}
			})
		}
		created.Wait()
		close(createErrs)
		for err := range createErrs {
			Expect(err).NotTo(HaveOccurred())
		}
		createdIn := time.Since(start)
		Eventually(func() int { n, _ := writes.ready(); return n }, 3*time.Minute, 50*time.Millisecond).
			Should(Equal(total), "every pipeline becomes Ready")
		_, lastReady := writes.ready()
		readyIn := lastReady.Sub(start)
		atReady := controllerStats("logpipeline")
		toReady := atReady.sub(before)

		from := time.Now()
		Consistently(writes.done, window, time.Second).ShouldNot(BeClosed(), "the watch lasts the whole window")
		to := time.Now()
		perPipeline := writes.between(from, to)
		periods := float64(to.Sub(from)) / float64(samplePeriod)
		sum, most := 0, 0
		for _, n := range perPipeline {
			sum += n
			most = max(most, n)
		}
		mean := float64(sum) / total / periods
		maxRate := float64(most) / periods
		steady := controllerStats("logpipeline").sub(atReady)

		lines := []string{
			fmt.Sprintf("bench: %d pipelines in %d namespaces Ready in %s; status writes per pipeline per sample period: mean %.2f, max %.2f",
				total, namespaces, readyIn.Round(100*time.Millisecond), mean, maxRate),
			fmt.Sprintf("bench: goals: all Ready within %s (%s), at most %.0f status write per pipeline per period (%s); created in %s, %d status writes in %s",
				readyGoal, verdictOf(readyIn <= readyGoal), writesGoal, verdictOf(maxRate <= writesGoal),
				createdIn.Round(time.Millisecond), sum, to.Sub(from).Round(time.Second)),
			"bench: operator until Ready: " + toReady.String(),
			fmt.Sprintf("bench: operator over the %s window: %s", window, steady),
		}
		for _, l := range lines {
			fmt.Println(l)
			AddReportEntry("bench", l)
		}
	})
})

// verdictOf names whether a goal was met.
func verdictOf(met bool) string {
	if met {
		return "met"
	}
	return "missed"
}
