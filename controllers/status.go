package controllers

import (
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/controllers/internal/verdict"
)

// workerStatus turns a snapshot taken at now into status numbers. Growth
// slopes are shown once the samples span half the health window.
func workerStatus(s capture.Snapshot, window time.Duration, now time.Time) *logsv1alpha1.WorkerStatus {
	at := metav1.NewTime(now.Truncate(time.Second))
	w := &logsv1alpha1.WorkerStatus{
		ObservedAt:          &at,
		SelectedContainers:  clamp32(s.SelectedContainers),
		ActiveStreams:       clamp32(s.ActiveStreams),
		WaitingStreams:      clamp32(s.WaitingStreams),
		Rotations:           s.Rotations,
		Reconnects:          s.Reconnects,
		Goroutines:          clamp32(s.Goroutines),
		OpenFileDescriptors: clamp32(s.OpenFDs),
		LinesTotal:          s.LinesTotal,
		BytesTotal:          s.BytesTotal,
		LinesPerSecond:      int64(s.Window.LinesPerSecond + 0.5),
	}
	w.FileContainers = clamp32(s.FileContainers)
	w.UnreadBytes = s.UnreadBytes
	if a := s.Agents; a != nil {
		w.Agents = &logsv1alpha1.AgentsStatus{Nodes: clamp32(a.Nodes), Reporting: clamp32(a.Reporting),
			MissingNodes: firstNodes(a.Missing), StaleNodes: firstNodes(a.Stale)}
		for _, l := range a.Lagging[:min(len(a.Lagging), logsv1alpha1.MaxLaggingNodes)] {
			w.Agents.LaggingNodes = append(w.Agents.LaggingNodes, logsv1alpha1.NodeLag{Node: l.Node, UnreadBytes: l.UnreadBytes})
		}
	}
	if s.Window.Covered >= window/2 {
		w.GoroutineGrowthPerMinute = verdict.Decimal(s.Window.GoroutineGrowthPerMinute)
		w.FDGrowthPer10Minutes = verdict.Decimal(s.Window.FDGrowthPer10Minutes)
	}
	var last time.Time
	for _, sk := range s.Sinks {
		w.DroppedLines += sk.DroppedLines
		fill := int32(0)
		if sk.QueueMaxBytes > 0 {
			fill = clamp32(int(100 * sk.QueueBytes / sk.QueueMaxBytes))
		}
		w.Sinks = append(w.Sinks, logsv1alpha1.SinkWorkerStatus{Name: sk.Name, SentLines: sk.SentLines,
			FailedBatches: sk.FailedBatches, DroppedLines: sk.DroppedLines, QueueFillPercent: fill})
		if sk.LastSuccess.After(last) {
			last = sk.LastSuccess
		}
	}
	if !last.IsZero() {
		t := metav1.NewTime(last.Truncate(time.Second))
		w.LastDeliveryTime = &t
	}
	return w
}

// firstNodes is at most MaxNamedNodes of nodes, nil for none.
func firstNodes(nodes []string) []string {
	if len(nodes) == 0 {
		return nil
	}
	return slices.Clone(nodes[:min(len(nodes), logsv1alpha1.MaxNamedNodes)])
}

func clamp32(n int) int32 {
	switch {
	case n > 1<<31-1:
		return 1<<31 - 1
	case n < -1<<31:
		return -1 << 31
	}
	return int32(n)
}

// totalsRefresh is how often running totals alone justify a status write;
// reconnectsRefresh how often new reconnects do (they are rarer, and a user
// watching for a cut connection should not wait a minute).
const (
	totalsRefresh     = time.Minute
	reconnectsRefresh = 10 * time.Second
)

// meaningfulChange tells whether new numbers differ enough from old ones to
// be worth a status write: stream counts, drops, failures starting, queue
// fill, goroutines or FDs that jumped, or a read rate that moved by 10% at
// once; running totals and the (noisy) growth slopes once a minute.
func meaningfulChange(old, cur *logsv1alpha1.WorkerStatus) bool {
	if old == nil || cur == nil {
		return old != cur
	}
	if old.SelectedContainers != cur.SelectedContainers || old.ActiveStreams != cur.ActiveStreams ||
		old.WaitingStreams != cur.WaitingStreams || old.DroppedLines != cur.DroppedLines || len(old.Sinks) != len(cur.Sinks) {
		return true
	}
	// A stream being handed over owns a goroutine more for an instant.
	if absDiff(int64(old.Goroutines), int64(cur.Goroutines)) > 2 {
		return true
	}
	if d := absDiff(int64(old.OpenFileDescriptors), int64(cur.OpenFileDescriptors)); d > 5 && 10*d > int64(max(old.OpenFileDescriptors, cur.OpenFileDescriptors)) {
		return true
	}
	if old.FileContainers != cur.FileContainers || !equality.Semantic.DeepEqual(agentNames(old.Agents), agentNames(cur.Agents)) {
		return true
	}
	// Lag that starts or ends at once; how much, with the totals.
	if (old.UnreadBytes >= logsv1alpha1.LagNamedBytes) != (cur.UnreadBytes >= logsv1alpha1.LagNamedBytes) {
		return true
	}
	if moved(old.LinesPerSecond, cur.LinesPerSecond) {
		return true
	}
	for i := range cur.Sinks {
		o, c := old.Sinks[i], cur.Sinks[i]
		if o.Name != c.Name || o.DroppedLines != c.DroppedLines ||
			absDiff(int64(o.QueueFillPercent), int64(c.QueueFillPercent)) >= 10 || (o.FailedBatches == 0) != (c.FailedBatches == 0) {
			return true
		}
	}
	if (old.LastDeliveryTime == nil) != (cur.LastDeliveryTime == nil) {
		return true
	}
	age := time.Duration(1<<63 - 1)
	if old.ObservedAt != nil && cur.ObservedAt != nil {
		age = cur.ObservedAt.Sub(old.ObservedAt.Time)
	}
	if old.Reconnects != cur.Reconnects && age >= reconnectsRefresh {
		return true
	}
	due := age >= totalsRefresh
	return due && (old.LinesTotal != cur.LinesTotal || old.Rotations != cur.Rotations || old.Reconnects != cur.Reconnects || failedBatches(old) != failedBatches(cur) ||
		old.GoroutineGrowthPerMinute != cur.GoroutineGrowthPerMinute || old.FDGrowthPer10Minutes != cur.FDGrowthPer10Minutes ||
		old.OpenFileDescriptors != cur.OpenFileDescriptors || old.Goroutines != cur.Goroutines ||
		old.UnreadBytes != cur.UnreadBytes || !equality.Semantic.DeepEqual(old.Agents, cur.Agents))
}

// agentNames is a, its lagging nodes by name only: which nodes lag is
// worth a write at once, by how much with the totals.
func agentNames(a *logsv1alpha1.AgentsStatus) *logsv1alpha1.AgentsStatus {
	if a == nil {
		return nil
	}
	n := *a
	n.LaggingNodes = nil
	for _, l := range a.LaggingNodes {
		n.LaggingNodes = append(n.LaggingNodes, logsv1alpha1.NodeLag{Node: l.Node})
	}
	return &n
}

// moved is true when b differs from a by more than 10% (and at least 1).
func moved(a, b int64) bool {
	d := absDiff(a, b)
	return d > 0 && 10*d > max(a, b)
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

func failedBatches(w *logsv1alpha1.WorkerStatus) int64 {
	var n int64
	for _, s := range w.Sinks {
		n += s.FailedBatches
	}
	return n
}

// durationOr returns d, or def when d is not positive.
func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// plural returns "1 sink" or "2 sinks".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
