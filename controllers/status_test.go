package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
)

func TestMeaningfulChange(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { m := metav1.NewTime(t0.Add(d)); return &m }
	base := func() *logsv1alpha1.WorkerStatus {
		return &logsv1alpha1.WorkerStatus{ObservedAt: at(0), SelectedContainers: 10, ActiveStreams: 10, Goroutines: 13,
			OpenFileDescriptors: 40, LinesTotal: 1000, LinesPerSecond: 100, GoroutineGrowthPerMinute: "0.10", FDGrowthPer10Minutes: "1.00",
			Sinks: []logsv1alpha1.SinkWorkerStatus{{Name: "loki", SentLines: 1000, QueueFillPercent: 5}}}
	}
	tests := []struct {
		name   string
		mutate func(*logsv1alpha1.WorkerStatus)
		want   bool
	}{
		{"nothing", func(w *logsv1alpha1.WorkerStatus) { w.ObservedAt = at(time.Second) }, false},
		{"totals within a minute", func(w *logsv1alpha1.WorkerStatus) { w.ObservedAt, w.LinesTotal = at(30*time.Second), 5000 }, false},
		{"totals after a minute", func(w *logsv1alpha1.WorkerStatus) { w.ObservedAt, w.LinesTotal = at(time.Minute), 5000 }, true},
		{"a reconnect within 10s", func(w *logsv1alpha1.WorkerStatus) { w.ObservedAt, w.Reconnects = at(5*time.Second), 1 }, false},
		{"a reconnect after 10s", func(w *logsv1alpha1.WorkerStatus) { w.ObservedAt, w.Reconnects = at(10*time.Second), 1 }, true},
		{"a stream more", func(w *logsv1alpha1.WorkerStatus) { w.ActiveStreams = 11 }, true},
		{"handover goroutine", func(w *logsv1alpha1.WorkerStatus) { w.Goroutines = 14 }, false},
		{"goroutines grew", func(w *logsv1alpha1.WorkerStatus) { w.Goroutines = 17 }, true},
		{"rate by 5%", func(w *logsv1alpha1.WorkerStatus) { w.LinesPerSecond = 105 }, false},
		{"rate by 20%", func(w *logsv1alpha1.WorkerStatus) { w.LinesPerSecond = 120 }, true},
		{"slope within a minute", func(w *logsv1alpha1.WorkerStatus) { w.GoroutineGrowthPerMinute = "2.90" }, false},
		{"slope after a minute", func(w *logsv1alpha1.WorkerStatus) { w.ObservedAt, w.GoroutineGrowthPerMinute = at(time.Minute), "2.90" }, true},
		{"fd jitter", func(w *logsv1alpha1.WorkerStatus) { w.OpenFileDescriptors = 43 }, false},
		{"fds jump", func(w *logsv1alpha1.WorkerStatus) { w.OpenFileDescriptors = 60 }, true},
		{"drops", func(w *logsv1alpha1.WorkerStatus) { w.DroppedLines = 1 }, true},
		{"queue fills", func(w *logsv1alpha1.WorkerStatus) { w.Sinks[0].QueueFillPercent = 50 }, true},
		{"first failure", func(w *logsv1alpha1.WorkerStatus) { w.Sinks[0].FailedBatches = 1 }, true},
		{"an agent went stale", func(w *logsv1alpha1.WorkerStatus) {
			w.Agents = &logsv1alpha1.AgentsStatus{Nodes: 2, Reporting: 1, StaleNodes: []string{"node-b"}}
		}, true},
		{"a container moved to its node's agent", func(w *logsv1alpha1.WorkerStatus) { w.FileContainers = 1 }, true},
	}
	for _, tc := range tests {
		cur := base()
		tc.mutate(cur)
		if got := meaningfulChange(base(), cur); got != tc.want {
			t.Errorf("%s: meaningfulChange = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestMeaningfulChangeOfLag(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { m := metav1.NewTime(t0.Add(d)); return &m }
	const mib = logsv1alpha1.LagNamedBytes
	base := func() *logsv1alpha1.WorkerStatus {
		return &logsv1alpha1.WorkerStatus{ObservedAt: at(0), UnreadBytes: 2 * mib,
			Agents: &logsv1alpha1.AgentsStatus{Nodes: 2, Reporting: 2, LaggingNodes: []logsv1alpha1.NodeLag{{Node: "node-a", UnreadBytes: 2 * mib}}}}
	}
	tests := []struct {
		name   string
		mutate func(*logsv1alpha1.WorkerStatus)
		want   bool
	}{
		{"the lag grew, within a minute", func(w *logsv1alpha1.WorkerStatus) {
			w.ObservedAt, w.UnreadBytes, w.Agents.LaggingNodes[0].UnreadBytes = at(30*time.Second), 5*mib, 5*mib
		}, false},
		{"the lag grew, after a minute", func(w *logsv1alpha1.WorkerStatus) {
			w.ObservedAt, w.UnreadBytes, w.Agents.LaggingNodes[0].UnreadBytes = at(time.Minute), 5*mib, 5*mib
		}, true},
		{"another node lags", func(w *logsv1alpha1.WorkerStatus) {
			w.Agents.LaggingNodes = append(w.Agents.LaggingNodes, logsv1alpha1.NodeLag{Node: "node-b", UnreadBytes: mib})
		}, true},
		{"the lag ended", func(w *logsv1alpha1.WorkerStatus) { w.UnreadBytes, w.Agents.LaggingNodes = 1000, nil }, true},
	}
	for _, tc := range tests {
		cur := base()
		tc.mutate(cur)
		if got := meaningfulChange(base(), cur); got != tc.want {
			t.Errorf("%s: meaningfulChange = %v, want %v", tc.name, got, tc.want)
		}
	}
}
