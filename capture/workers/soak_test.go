package workers_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/workers"
)

// seqSink checks sequence numbers as records arrive, so that a long soak
// needs no memory for what it delivered.
type seqSink struct {
	mu        sync.Mutex
	next      map[string]int
	delivered int64
	dup, lost int64
}

func newSeqSink() *seqSink { return &seqSink{next: map[string]int{}} }

func (s *seqSink) Write(_ context.Context, r *capture.Record) error {
	i := strings.Index(r.Line, " seq=")
	if i < 0 {
		return nil
	}
	rest := r.Line[i+5:]
	if j := strings.IndexByte(rest, ' '); j >= 0 {
		rest = rest[:j]
	}
	n, err := strconv.Atoi(rest)
	if err != nil {
		return nil
	}
	key := r.Namespace + "/" + r.Pod
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delivered++
	switch want := s.next[key]; {
	case n < want:
		s.dup++
	case n > want:
		s.lost += int64(n - want)
		s.next[key] = n + 1
	default:
		s.next[key] = n + 1
	}
	return nil
}

func (s *seqSink) Run(context.Context) {}

func (s *seqSink) Close(context.Context) error { return nil }

// missing is how many generated lines have not arrived yet.
func (s *seqSink) missing(want map[string]int) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m int64
	for k, n := range want {
		m += int64(n - s.next[k])
	}
	return m
}

func (s *seqSink) counts() (delivered, dup, lost int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered, s.dup, s.lost
}

// The soak runs only under `make soak` (SOAK_DURATION set): 100 containers,
// a pool of 50 and rotation every second, then it prints what it measured.
var _ = Describe("Soak", Label("soak"), func() {
	It("keeps goroutines and FDs flat and delivers every line once", func() {
		duration := soakDuration()
		ns := newNamespace()
		pods := createPods(ns, 100)
		sink := newSeqSink()
		// 50 slots rotating every second need up to 50 opens/s: the open rate
		// is raised as an admin would, by its flag, to leave room.
		h := startHarness(func(o *workers.Options) { o.LogOpenRate, o.LogOpenBurst = 100, 100 })
		defer h.stop()
		h.factory = func(string, capture.SinkConfig) capture.Sink { return sink }
		key := types.NamespacedName{Namespace: ns, Name: "soak"}
		gen := startGenerator(ns, pods, 100*time.Millisecond)
		Expect(h.mgr.Apply(ctx, key, pipelineConfig(ns, "soak", 50, time.Second))).To(Succeed())
		gs, fds := sampleSteady(duration, func() {})
		gen.stop()
		want := gen.expected()
		Eventually(func() int64 { return sink.missing(want) }, 2*time.Minute, time.Second).Should(BeZero())
		s, _ := h.mgr.Snapshot(key)
		delivered, dup, lost := sink.counts()
		gSlope, _ := workers.SlopePerMinute(gs)
		fdSlope, _ := workers.SlopePerMinute(fds)
		report := fmt.Sprintf("soak %s: containers=100 maxStreams=50 rotation=1s rotations=%d generated=%d delivered=%d lost=%d duplicated=%d "+
			"goroutines=%d..%d slope=%.3f/min fds=%d..%d slope=%.3f/min pipelineGoroutines=%d activeStreams=%d",
			duration, s.Rotations, gen.total(), delivered, lost, dup,
			int(gs[0].Value), int(gs[len(gs)-1].Value), gSlope, int(fds[0].Value), int(fds[len(fds)-1].Value), fdSlope,
			s.Goroutines, s.ActiveStreams)
		fmt.Fprintln(os.Stdout, report)
		AddReportEntry("soak", report)
		Expect(lost).To(BeZero())
		Expect(dup).To(BeZero())
		Expect(gSlope).To(BeNumerically("<=", 0.1))
		Expect(fdSlope).To(BeNumerically("<=", 0.1))
	})
})

// soakDuration is SOAK_DURATION; a soak spec is skipped without it.
func soakDuration() time.Duration {
	d := os.Getenv("SOAK_DURATION")
	if d == "" {
		Skip("set SOAK_DURATION (make soak) to run the soak")
	}
	duration, err := time.ParseDuration(d)
	Expect(err).NotTo(HaveOccurred())
	return duration
}

// sampleSteady waits out a warm-up (a fifth of duration, at most 30s),
// then until duration has passed samples the steady goroutine and FD
// counts every 5 seconds, calling also with each sample.
func sampleSteady(duration time.Duration, also func()) (gs, fds []workers.Sample) {
	warm := min(30*time.Second, duration/5)
	time.Sleep(warm)
	for start := time.Now(); time.Since(start) < duration-warm; {
		now := time.Now()
		g, fd := steadyCounts()
		gs = append(gs, workers.Sample{At: now, Value: float64(g)})
		fds = append(fds, workers.Sample{At: now, Value: float64(fd)})
		also()
		time.Sleep(5 * time.Second)
	}
	return gs, fds
}

// steadyCounts reads goroutines and FDs ten times, 10 ms apart, and keeps the
// least of each: a stream being handed over adds a goroutine for an instant,
// a leak stays.
func steadyCounts() (g, fd int) {
	g, fd = ownGoroutines(), workers.OpenFDs()
	for range 9 {
		time.Sleep(10 * time.Millisecond)
		g, fd = min(g, ownGoroutines()), min(fd, workers.OpenFDs())
	}
	return g, fd
}
