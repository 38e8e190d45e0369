package workers_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/positionstore"
	"github.com/log-capturer/log-capturer/capture/workers"
)

// ackLaterSink keeps what it gets and acknowledges a record once it is
// older than delay, as a sink does after a batch was sent; a crash loses
// the acknowledgements still pending.
type ackLaterSink struct {
	delay time.Duration
	// crashed makes the sink behave as if its process were killed: it keeps
	// nothing more and acknowledges nothing more.
	crashed atomic.Bool

	mu      sync.Mutex
	records []capture.Record
	pending []*capture.Record
	at      []time.Time
}

func (s *ackLaterSink) Write(_ context.Context, r *capture.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.crashed.Load() {
		return nil
	}
	// The record arrives here at once, as a batch would at a destination.
	capture.Sending([]*capture.Record{r})
	s.records = append(s.records, *r)
	s.pending = append(s.pending, r)
	s.at = append(s.at, time.Now())
	return nil
}

// ack acknowledges the records written before cutoff.
func (s *ackLaterSink) ack(cutoff time.Time) {
	if s.crashed.Load() {
		return
	}
	s.mu.Lock()
	n := 0
	for n < len(s.at) && s.at[n].Before(cutoff) {
		n++
	}
	done := s.pending[:n]
	s.pending, s.at = s.pending[n:], s.at[n:]
	s.mu.Unlock()
	capture.AckAll(done)
}

func (s *ackLaterSink) flush() { s.ack(time.Now().Add(time.Hour)) }

func (s *ackLaterSink) Run(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.ack(now.Add(-s.delay))
		}
	}
}

func (s *ackLaterSink) Close(context.Context) error {
	s.flush()
	return nil
}

func (s *ackLaterSink) Records() []capture.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]capture.Record(nil), s.records...)
}

// crashableStore is a position store that a simulated crash freezes: a
// killed process writes nothing more.
type crashableStore struct {
	capture.PositionStore
	frozen atomic.Bool
}

func (s *crashableStore) Save(ctx context.Context, ref capture.PipelineRef, data []byte, containers int) error {
	if s.frozen.Load() {
		return nil
	}
	return s.PositionStore.Save(ctx, ref, data, containers) //nolint:wrapcheck // the store names the object
}

// stagingStore is a crashableStore whose store also stages positions (the
// journal); a simulated crash freezes its stages too.
type stagingStore struct {
	*crashableStore
	stager capture.PositionStager
}

func (s *stagingStore) Stage(ctx context.Context, ref capture.PipelineRef, data []byte, containers int) error {
	if s.frozen.Load() {
		return nil
	}
	return s.stager.Stage(ctx, ref, data, containers) //nolint:wrapcheck // the store names the file
}

// positionsHome stands for the operator's namespace, where positions live.
const positionsHome = "default"

// positionsObject is the key of a pipeline's positions ConfigMap.
func positionsObject(key types.NamespacedName) types.NamespacedName {
	return types.NamespacedName{Namespace: positionsHome, Name: positionstore.PositionsConfigMapName(key.Namespace, key.Name)}
}

// withStore gives a harness a ConfigMap position store.
func withStore(o *workers.Options) {
	o.Positions = &positionstore.ConfigMapStore{Client: clientset, Namespace: positionsHome, OwnerKind: "LogPipeline"}
}

func startStoreHarness() *harness {
	store := &crashableStore{}
	h := startHarness(withStore, func(o *workers.Options) {
		store.PositionStore = o.Positions
		o.Positions = store
	})
	h.store = store
	h.factory = func(string, capture.SinkConfig) capture.Sink { return &ackLaterSink{delay: 300 * time.Millisecond} }
	return h
}

// crash makes the harness's workers end the way a killed process ends: from
// now on no sink keeps or acknowledges anything and no position is written,
// so that stopping the workers drains nothing and stores nothing more.
func (h *harness) crash() {
	h.mu.Lock()
	defer h.mu.Unlock()
	// The sinks first, so that nothing arrives after the last write.
	for _, s := range h.sinks {
		if a, ok := s.(*ackLaterSink); ok {
			a.mu.Lock()
			a.crashed.Store(true)
			a.mu.Unlock()
		}
	}
	h.store.frozen.Store(true)
}

func (h *harness) ackSink(pipeline types.NamespacedName) *ackLaterSink {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, _ := h.sinks[pipeline.String()+"/mem"].(*ackLaterSink)
	return s
}

func durableConfig(ns, name, uid string) capture.PipelineConfig {
	c := pipelineConfig(ns, name, 10, 2*time.Second)
	c.UID = uid
	c.PositionsInterval = time.Second
	return c
}

// across checks two runs' deliveries: together every generated line, the
// second run in order from where it resumed; it returns the duplicates.
func across(first, second map[string][]int, want map[string]int) (dups int, problems []string) {
	for key, n := range want {
		a, b := first[key], second[key]
		for i, v := range a {
			if v != i {
				problems = append(problems, key+": first run out of order")
				break
			}
		}
		if len(b) == 0 {
			if len(a) != n {
				problems = append(problems, key+": lines missing")
			}
			continue
		}
		for i := 1; i < len(b); i++ {
			if b[i] != b[i-1]+1 {
				problems = append(problems, key+": second run lost, duplicated or reordered lines")
				break
			}
		}
		if b[0] > len(a) {
			problems = append(problems, key+": lines between the runs lost")
		}
		if b[len(b)-1] != n-1 {
			problems = append(problems, key+": the last lines missing")
		}
		dups += max(len(a)-b[0], 0)
	}
	return dups, problems
}

// resume starts a second runtime for the pipeline a second after the first
// one stopped, lets the generator write for another second, stops it and
// waits until both runs together delivered every generated line. It returns
// the second harness (stopped when the spec ends), when it took over, and
// how many lines the second run sent again.
func resume(key types.NamespacedName, uid string, first map[string][]int, gen *generator) (*harness, time.Time, int) {
	time.Sleep(time.Second) // lines written while no operator runs
	h2 := startStoreHarness()
	DeferCleanup(h2.stop)
	started := time.Now()
	err := h2.mgr.Apply(ctx, key, durableConfig(key.Namespace, key.Name, uid))
	Expect(err).NotTo(HaveOccurred())
	time.Sleep(time.Second)
	gen.stop()
	want := gen.expected()
	var dups int
	EventuallyWithOffset(1, func() []string {
		var problems []string
		dups, problems = across(first, seqs(h2.ackSink(key).Records()), want)
		return problems
	}, 30*time.Second, 250*time.Millisecond).Should(BeEmpty())
	return h2, started, dups
}

func positionsStatus(h *harness, key types.NamespacedName) capture.PositionsStatus {
	return snapshot(h, key).Positions
}

var _ = Describe("Durable positions", func() {
	It("resume after a crash with every line, duplicates bounded by the write interval and counted", func() {
		ns := newNamespace()
		pods := createPods(ns, 5)
		key := types.NamespacedName{Namespace: ns, Name: "crash"}
		uid := string(uuid.NewUUID())
		gen := startGenerator(ns, pods, 20*time.Millisecond)

		h1 := startStoreHarness()
		err := h1.mgr.Apply(ctx, key, durableConfig(ns, key.Name, uid))
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() int64 { return positionsStatus(h1, key).LastWrite.Unix() }, 10*time.Second).Should(BeNumerically(">", 0))
		time.Sleep(2500 * time.Millisecond)
		h1.crash()
		crashedAt := time.Now()
		h1.stop()
		first := seqs(h1.ackSink(key).Records())

		h2, _, dups := resume(key, uid, first, gen)

		counted := snapshot(h2, key).ResumeDuplicates
		rate := float64(gen.total()) / time.Since(crashedAt.Add(-4*time.Second)).Seconds()
		// Lines after the last write (1s interval) plus those not acknowledged
		// yet (300ms) may come again, never more.
		bound := int(rate * (1.0 + 0.3 + 0.5))
		GinkgoWriter.Printf("crash: %d lines, %d duplicates, %d counted, bound %d\n", gen.total(), dups, counted, bound)
		Expect(dups).To(BeNumerically("<=", bound))
		Expect(counted).To(BeNumerically(">", 0), "lines handed over but not acknowledged when positions were stored are counted")
		Expect(counted).To(BeNumerically("<=", dups), "only lines sent again are counted")
		Expect(snapshot(h2, key).Gaps).To(BeZero())
	})

	It("resume after a clean shutdown with no loss and no duplicate", func() {
		ns := newNamespace()
		pods := createPods(ns, 5)
		key := types.NamespacedName{Namespace: ns, Name: "clean"}
		uid := string(uuid.NewUUID())
		gen := startGenerator(ns, pods, 20*time.Millisecond)

		h1 := startStoreHarness()
		err := h1.mgr.Apply(ctx, key, durableConfig(ns, key.Name, uid))
		Expect(err).NotTo(HaveOccurred())
		time.Sleep(2 * time.Second)
		h1.stop()
		first := seqs(h1.ackSink(key).Records())
		Expect(first).To(HaveLen(5))

		h2, started, dups := resume(key, uid, first, gen)
		Expect(dups).To(BeZero())
		// One write per interval (1s) for the pipeline, whatever the number of
		// containers and lines.
		Expect(testutilCounter(h2, "log_capturer_positions_writes_total", key.String())).
			To(BeNumerically("<=", time.Since(started).Seconds()+1))
		Expect(snapshot(h2, key).ResumeDuplicates).To(BeZero())
		Expect(positionsStatus(h2, key).Reason).To(Equal(capture.PositionsStored))
	})

	It("count the stretch of log the kubelet rotated away while no operator ran", func() {
		ns := newNamespace()
		pods := createPods(ns, 1)
		key := types.NamespacedName{Namespace: ns, Name: "gap"}
		uid := string(uuid.NewUUID())
		gen := &generator{next: map[string]int{}}
		t0 := time.Now().Add(-time.Minute)
		gen.write(ns, pods[0], 10, t0)

		h1 := startStoreHarness()
		err := h1.mgr.Apply(ctx, key, durableConfig(ns, key.Name, uid))
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() int { return len(h1.ackSink(key).Records()) }, 10*time.Second).Should(Equal(10))
		h1.stop()

		// While no operator runs: 5 more lines, then the kubelet rotates the
		// first 12 away, then 3 more.
		for i := range 5 {
			gen.write(ns, pods[0], 1, t0.Add(time.Duration(i+1)*time.Second))
		}
		kubelet.Container(ns, pods[0], "main").RotateAway(12)
		gen.write(ns, pods[0], 3, t0.Add(10*time.Second))

		h2 := startStoreHarness()
		defer h2.stop()
		err = h2.mgr.Apply(ctx, key, durableConfig(ns, key.Name, uid))
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() []int { return seqs(h2.ackSink(key).Records())[ns+"/"+pods[0]] }, 10*time.Second).
			Should(Equal([]int{12, 13, 14, 15, 16, 17}), "what the kubelet still has, once")
		s := snapshot(h2, key)
		Expect(s.Gaps).To(Equal(int64(1)))
		Expect(s.LastGap).NotTo(BeNil())
		Expect(s.LastGap.From).To(BeTemporally("==", t0))
		Expect(s.LastGap.To).To(BeTemporally("==", t0.Add(3*time.Second)))
		Expect(testutilCounter(h2, "log_capturer_log_gaps_total", key.String())).To(Equal(1.0))
	})

	It("resume without duplicates or a gap when the kubelet rotated part of the counted second away", func() {
		ns := newNamespace()
		pods := createPods(ns, 1)
		key := types.NamespacedName{Namespace: ns, Name: "rotated"}
		uid := string(uuid.NewUUID())
		gen := &generator{next: map[string]int{}}
		t0 := time.Now().Add(-time.Minute).Truncate(time.Second).Add(100 * time.Millisecond)
		gen.write(ns, pods[0], 10, t0) // ten lines sharing one timestamp

		h1 := startStoreHarness()
		err := h1.mgr.Apply(ctx, key, durableConfig(ns, key.Name, uid))
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() int { return len(h1.ackSink(key).Records()) }, 10*time.Second).Should(Equal(10))
		h1.stop()

		// The kubelet rotates the first 4 away; the log goes on.
		kubelet.Container(ns, pods[0], "main").RotateAway(4)
		gen.write(ns, pods[0], 3, t0.Add(time.Second))

		h2 := startStoreHarness()
		defer h2.stop()
		err = h2.mgr.Apply(ctx, key, durableConfig(ns, key.Name, uid))
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() []int { return seqs(h2.ackSink(key).Records())[ns+"/"+pods[0]] }, 10*time.Second).
			Should(Equal([]int{10, 11, 12}))
		Consistently(func() []int { return seqs(h2.ackSink(key).Records())[ns+"/"+pods[0]] }, time.Second).
			Should(Equal([]int{10, 11, 12}))
		Expect(snapshot(h2, key).Gaps).To(BeZero())
	})

	It("carry over positions an earlier version kept in the pipeline's namespace, with no loss and no duplicate", func() {
		ns := newNamespace()
		pods := createPods(ns, 5)
		key := types.NamespacedName{Namespace: ns, Name: "upgrade"}
		uid := string(uuid.NewUUID())
		gen := startGenerator(ns, pods, 20*time.Millisecond)

		h1 := startStoreHarness()
		Expect(h1.mgr.Apply(ctx, key, durableConfig(ns, key.Name, uid))).To(Succeed())
		time.Sleep(2 * time.Second)
		h1.stop()
		first := seqs(h1.ackSink(key).Records())

		// What the earlier version left: the same positions, in the tenant's
		// namespace, owned by the pipeline; nothing in the operator's yet.
		stored := &corev1.ConfigMap{}
		Expect(k8sClient.Get(ctx, positionsObject(key), stored)).To(Succeed())
		Expect(k8sClient.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: positionstore.LegacyConfigMapName(key.Name),
				Labels: map[string]string{positionstore.PositionsLabel: key.Name},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "logs.capturer.dev/v1alpha1", Kind: "LogPipeline",
					Name: key.Name, UID: types.UID(uid)}}},
			BinaryData: stored.BinaryData,
		})).To(Succeed())
		Expect(k8sClient.Delete(ctx, stored)).To(Succeed())

		h2, _, dups := resume(key, uid, first, gen)
		Expect(dups).To(BeZero())
		Expect(snapshot(h2, key).Gaps).To(BeZero())
		Eventually(func() error { return k8sClient.Get(ctx, positionsObject(key), &corev1.ConfigMap{}) }, 10*time.Second).
			Should(Succeed(), "the positions are carried over into the operator's namespace")
	})

	It("share one positions write rate for the process", func() {
		ns := newNamespace()
		createPods(ns, 1)
		h := startHarness(withStore, func(o *workers.Options) { o.PositionsWriteRate = 1 })
		defer h.stop()
		h.factory = func(string, capture.SinkConfig) capture.Sink { return &ackLaterSink{delay: 10 * time.Millisecond} }
		gen := startGenerator(ns, []string{"gen-000"}, 20*time.Millisecond)
		defer gen.stop()
		keys := []types.NamespacedName{{Namespace: ns, Name: "a"}, {Namespace: ns, Name: "b"}, {Namespace: ns, Name: "c"}}
		start := time.Now()
		for _, key := range keys {
			Expect(h.mgr.Apply(ctx, key, durableConfig(ns, key.Name, string(uuid.NewUUID())))).To(Succeed())
		}
		time.Sleep(6 * time.Second)
		writes := 0.0
		for _, key := range keys {
			writes += testutilCounter(h, "log_capturer_positions_writes_total", key.String())
		}
		elapsed := time.Since(start).Seconds()
		GinkgoWriter.Printf("3 pipelines writing every 1s under a rate of 1/s: %.0f writes in %.1fs\n", writes, elapsed)
		// Three pipelines would write about 3 times a second; the rate allows
		// one a second and a burst of one.
		Expect(writes).To(BeNumerically("<=", elapsed+1))
		Expect(writes).To(BeNumerically(">=", 2))
	})

	It("delete a deleted pipeline's positions", func() {
		ns := newNamespace()
		createPods(ns, 1)
		key := types.NamespacedName{Namespace: ns, Name: "deleted"}
		h := startStoreHarness()
		defer h.stop()
		Expect(h.mgr.Apply(ctx, key, durableConfig(ns, key.Name, string(uuid.NewUUID())))).To(Succeed())
		Eventually(func() error { return k8sClient.Get(ctx, positionsObject(key), &corev1.ConfigMap{}) }, 10*time.Second).Should(Succeed())
		// The first call starts the stop; a later one deletes once the
		// workers made their last write.
		Eventually(func() error { return h.mgr.Delete(ctx, key) }, 20*time.Second, 100*time.Millisecond).Should(Succeed())
		err := k8sClient.Get(ctx, positionsObject(key), &corev1.ConfigMap{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "got %v", err)
	})

	It("fall back to startAt with a clear status when the stored positions are corrupted or foreign", func() {
		ns := newNamespace()
		pods := createPods(ns, 2)
		gen := startGenerator(ns, pods, 20*time.Millisecond)
		defer gen.stop()

		corrupt := types.NamespacedName{Namespace: ns, Name: "corrupt"}
		uids := map[types.NamespacedName]string{corrupt: string(uuid.NewUUID())}
		Expect(k8sClient.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: positionsHome, Name: positionsObject(corrupt).Name,
				Labels:      map[string]string{positionstore.PositionsLabel: corrupt.Name, positionstore.PositionsNamespaceLabel: ns},
				Annotations: map[string]string{positionstore.PipelineUIDAnnotation: uids[corrupt]}},
			BinaryData: map[string][]byte{positionstore.PositionsDataKey: []byte("not gzip at all")},
		})).To(Succeed())
		foreign := types.NamespacedName{Namespace: ns, Name: "foreign"}
		Expect(k8sClient.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: positionsHome, Name: positionsObject(foreign).Name},
			Data:       map[string]string{"someone": "else's"},
		})).To(Succeed())

		h := startStoreHarness()
		defer h.stop()
		for _, key := range []types.NamespacedName{corrupt, foreign} {
			err := h.mgr.Apply(ctx, key, durableConfig(ns, key.Name, uids[key]))
			Expect(err).NotTo(HaveOccurred())
		}
		Eventually(func() string { return positionsStatus(h, corrupt).Reason }, 10*time.Second).Should(Equal(capture.PositionsReset))
		Expect(positionsStatus(h, corrupt).Message).To(ContainSubstring("not gzip-compressed positions"))
		Eventually(func() string { return positionsStatus(h, foreign).Reason }, 10*time.Second).Should(Equal(capture.PositionsForeign))
		Expect(positionsStatus(h, foreign).Durable()).To(BeFalse())
		Expect(positionsStatus(h, foreign).Message).To(ContainSubstring("lacks the labels"))

		// Both capture from startAt; the corrupted object is replaced by a
		// readable one, the foreign one is left alone.
		for _, key := range []types.NamespacedName{corrupt, foreign} {
			Eventually(func() int { return len(h.ackSink(key).Records()) }, 10*time.Second).Should(BeNumerically(">", 0))
		}
		Eventually(func() (int, error) {
			cm := &corev1.ConfigMap{}
			if err := k8sClient.Get(ctx, positionsObject(corrupt), cm); err != nil {
				return 0, err
			}
			return strconv.Atoi(cm.Data["containers"])
		}, 10*time.Second).Should(Equal(2))
		Consistently(func() map[string]string {
			cm := &corev1.ConfigMap{}
			Expect(k8sClient.Get(ctx, positionsObject(foreign), cm)).To(Succeed())
			return cm.Data
		}, 3*time.Second, 500*time.Millisecond).Should(Equal(map[string]string{"someone": "else's"}))
	})
})

// testutilCounter reads a per-pipeline counter from the harness's registry.
func testutilCounter(h *harness, name, pipeline string) float64 {
	families, err := h.reg.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "pipeline" && l.GetValue() == pipeline {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}
