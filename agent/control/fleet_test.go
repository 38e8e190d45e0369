package control_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/types"

	"github.com/log-capturer/log-capturer/agent/control"
	"github.com/log-capturer/log-capturer/capture"
)

func TestMerge(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		parts map[string]capture.Snapshot
		want  capture.Snapshot
	}{
		{name: "no node", parts: nil, want: capture.Snapshot{}},
		{
			name: "counts add up, process-wide numbers and slopes are the largest node's",
			parts: map[string]capture.Snapshot{
				"node-a": {Running: true, SelectedContainers: 3, ActiveStreams: 2, WaitingStreams: 1, OpenStreams: 2,
					Goroutines: 5, ProcessGoroutines: 40, OpenFDs: 12, LinesTotal: 1000, BytesTotal: 64000, Gaps: 1, GapBytes: 10,
					Window: capture.Window{Samples: 6, Covered: time.Minute, GoroutineGrowthPerMinute: 0.5, LinesInWindow: 600, LinesPerSecond: 10}},
				"node-b": {Running: false, SelectedContainers: 1, ActiveStreams: 1, OpenStreams: 1, FileContainers: 1,
					Goroutines: 2, ProcessGoroutines: 90, OpenFDs: 7, LinesTotal: 24, BytesTotal: 2400, ResumeDuplicates: 3,
					Window: capture.Window{Samples: 4, Covered: 40 * time.Second, FDGrowthPer10Minutes: 30, LinesInWindow: 24, LinesPerSecond: 1}},
			},
			want: capture.Snapshot{Running: true, SelectedContainers: 4, ActiveStreams: 3, WaitingStreams: 1, OpenStreams: 3, FileContainers: 1,
				Goroutines: 7, ProcessGoroutines: 90, OpenFDs: 12, LinesTotal: 1024, BytesTotal: 66400, Gaps: 1, GapBytes: 10, ResumeDuplicates: 3,
				Window: capture.Window{Samples: 4, Covered: 40 * time.Second, GoroutineGrowthPerMinute: 0.5, FDGrowthPer10Minutes: 30,
					LinesInWindow: 624, LinesPerSecond: 11}},
		},
		{
			name: "a sink's numbers add up by name; it fails since its earliest failure on any node",
			parts: map[string]capture.Snapshot{
				"node-a": {Sinks: []capture.SinkStats{
					{Name: "loki", SentLines: 10, FailedBatches: 1, FailingSince: t0.Add(time.Minute), LastError: "a: 503", LastSuccess: t0},
					{Name: "file", SentLines: 5}}},
				"node-b": {Sinks: []capture.SinkStats{
					{Name: "loki", SentLines: 7, DroppedLines: 2, RejectedLines: 2, LastRejected: t0, LastRejection: "400",
						FailingSince: t0, LastError: "b: refused", LastSuccess: t0.Add(2 * time.Minute)}}},
			},
			want: capture.Snapshot{Sinks: []capture.SinkStats{
				{Name: "loki", SentLines: 17, FailedBatches: 1, DroppedLines: 2, RejectedLines: 2, LastRejected: t0, LastRejection: "400",
					FailingSince: t0, LastError: "b: refused", LastSuccess: t0.Add(2 * time.Minute)},
				{Name: "file", SentLines: 5}}},
		},
		{
			name: "the latest gap of any node",
			parts: map[string]capture.Snapshot{
				"node-a": {Gaps: 1, LastGap: &capture.Gap{Container: "a", To: t0}},
				"node-b": {Gaps: 2, LastGap: &capture.Gap{Container: "b", To: t0.Add(time.Second)}},
			},
			want: capture.Snapshot{Gaps: 3, LastGap: &capture.Gap{Container: "b", To: t0.Add(time.Second)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, control.Merge(tt.parts)); diff != "" {
				t.Errorf("Merge (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFleet(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	web := types.NamespacedName{Namespace: "shop", Name: "web"}
	bank := types.NamespacedName{Namespace: "bank", Name: "all"}
	report := func(keys ...types.NamespacedName) control.Report {
		r := control.Report{Revision: "r1"}
		for _, k := range keys {
			r.Pipelines = append(r.Pipelines, control.PipelineReport{Namespace: k.Namespace, Name: k.Name,
				Snapshot: capture.Snapshot{Running: true, LinesTotal: 100, Window: capture.Window{GoroutineGrowthPerMinute: float64(len(k.Name))}}})
		}
		return r
	}
	f := &control.Fleet{StaleAfter: 30 * time.Second, Now: func() time.Time { return now }}

	if refused := f.Record("node-a", report(web, bank), map[types.NamespacedName]bool{web: true}); refused != 1 {
		t.Errorf("node-a reported a pipeline it was not sent: refused %d, want 1", refused)
	}
	now = now.Add(20 * time.Second)
	f.Record("node-b", report(web, bank), map[types.NamespacedName]bool{web: true, bank: true})
	now = now.Add(15 * time.Second) // node-a's report is 35s old now, node-b's 15s

	tests := []struct {
		name      string
		key       types.NamespacedName
		nodes     []string
		lines     int64
		running   bool
		agents    capture.Agents
		forget    func()
		afterward bool
	}{
		{name: "no node selected: nothing to run, not broken", key: web, nodes: nil, running: true,
			agents: capture.Agents{StaleAfter: 30 * time.Second}},
		{name: "a stale agent's numbers still count, and it is named", key: web, nodes: []string{"node-b", "node-a"}, lines: 200, running: true,
			agents: capture.Agents{Nodes: 2, Reporting: 1, Stale: []string{"node-a"}, StaleAfter: 30 * time.Second, GoroutineGrowthNode: "node-a"}},
		{name: "a node's refused pipeline is not summed; a node without an agent is missing", key: bank, nodes: []string{"node-c", "node-a", "node-b"},
			lines: 100, running: true,
			agents: capture.Agents{Nodes: 3, Reporting: 1, Missing: []string{"node-c"}, Stale: []string{"node-a"}, StaleAfter: 30 * time.Second, GoroutineGrowthNode: "node-b"}},
		{name: "only stale and missing agents: not running", key: web, nodes: []string{"node-a", "node-c"}, lines: 100, running: false,
			agents: capture.Agents{Nodes: 2, Missing: []string{"node-c"}, Stale: []string{"node-a"}, StaleAfter: 30 * time.Second, GoroutineGrowthNode: "node-a"}},
		{name: "a deleted pipeline is forgotten on every node", key: web, nodes: []string{"node-a", "node-b"}, running: true,
			forget: func() { f.Forget(web) },
			agents: capture.Agents{Nodes: 2, Reporting: 1, Stale: []string{"node-a"}, StaleAfter: 30 * time.Second}},
		{name: "a deleted node is missing", key: bank, nodes: []string{"node-b"}, running: false,
			forget: func() { f.ForgetNode("node-b") },
			agents: capture.Agents{Nodes: 1, Missing: []string{"node-b"}, StaleAfter: 30 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.forget != nil {
				tt.forget()
			}
			s := f.Snapshot(tt.key, tt.nodes)
			if s.LinesTotal != tt.lines || s.Running != tt.running {
				t.Errorf("lines %d running %v, want %d %v", s.LinesTotal, s.Running, tt.lines, tt.running)
			}
			if diff := cmp.Diff(&tt.agents, s.Agents); diff != "" {
				t.Errorf("Agents (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFleetSinkStats(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	a := types.NamespacedName{Namespace: "team-a", Name: "apps"}
	a2 := types.NamespacedName{Namespace: "team-a", Name: "jobs"}
	b := types.NamespacedName{Namespace: "team-b", Name: "apps"}
	all := map[types.NamespacedName]bool{a: true, a2: true, b: true}
	report := func(p ...control.PipelineReport) control.Report { return control.Report{Pipelines: p} }
	sink := func(key types.NamespacedName, st ...capture.SinkStats) control.PipelineReport {
		return control.PipelineReport{Namespace: key.Namespace, Name: key.Name, Snapshot: capture.Snapshot{Sinks: st}}
	}
	f := &control.Fleet{Now: func() time.Time { return t0 }}
	if _, ok := f.SinkStats("team-a", "loki"); ok {
		t.Fatal("SinkStats found a sink before any report")
	}
	budget := func(s capture.SinkStats, queued, share, total int64) capture.SinkStats {
		s.NamespaceQueuedBytes, s.NamespaceShareBytes, s.MemoryBudgetBytes, s.BudgetNamespaces = queued, share, total, 2
		return s
	}
	f.Record("node-a", report(
		sink(a, budget(capture.SinkStats{Name: "loki", SentLines: 10, SentBytes: 1000, LastSuccess: t0}, 300, 500, 1000),
			capture.SinkStats{Name: "file", SentLines: 99}),
		sink(a2, budget(capture.SinkStats{Name: "loki", SentLines: 5, SentBytes: 500, QueueBytes: 7}, 300, 500, 1000)),
		// Another tenant's SinkTarget of the same name is not team-a's.
		sink(b, capture.SinkStats{Name: "loki", SentLines: 1000}),
	), all)
	f.Record("node-b", report(
		sink(a, budget(capture.SinkStats{Name: "loki", SentLines: 3, SentBytes: 300, FailingSince: t0, LastError: "503"}, 100, 400, 800)),
	), all)

	got, ok := f.SinkStats("team-a", "loki")
	if !ok {
		t.Fatal("SinkStats did not find team-a's loki")
	}
	want := capture.SinkStats{Name: "loki", SentLines: 18, SentBytes: 1800, QueueBytes: 7, LastSuccess: t0, FailingSince: t0, LastError: "503",
		// node-a's two pipelines share its budget: its facts once; node-b's add.
		NamespaceQueuedBytes: 400, NamespaceShareBytes: 900, MemoryBudgetBytes: 1800, BudgetNamespaces: 2}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("SinkStats(team-a, loki) (-want +got):\n%s", d)
	}
	if _, ok := f.SinkStats("team-c", "loki"); ok {
		t.Error("SinkStats found a sink of a namespace no agent reported")
	}
	f.ForgetNode("node-b")
	got, _ = f.SinkStats("team-a", "loki")
	if got.SentLines != 15 || got.MemoryBudgetBytes != 1000 {
		t.Errorf("after node-b was forgotten: %d lines, budget %d; want 15 and 1000", got.SentLines, got.MemoryBudgetBytes)
	}
}

func TestFleetLagging(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	key := types.NamespacedName{Namespace: "team-a", Name: "apps"}
	f := &control.Fleet{Now: func() time.Time { return t0 }}
	const mib = 1 << 20
	for node, unread := range map[string]int64{"node-a": 5 * mib, "node-b": mib - 1, "node-c": 9 * mib, "node-d": 5 * mib, "node-e": 2 * mib} {
		f.Record(node, control.Report{Pipelines: []control.PipelineReport{{Namespace: key.Namespace, Name: key.Name,
			Snapshot: capture.Snapshot{UnreadBytes: unread}}}}, map[types.NamespacedName]bool{key: true})
	}
	s := f.Snapshot(key, []string{"node-a", "node-b", "node-c", "node-d", "node-e"})
	if want := int64(22*mib - 1); s.UnreadBytes != want {
		t.Errorf("UnreadBytes = %d, want %d (the sum over nodes)", s.UnreadBytes, want)
	}
	// The three worst of those at least a MiB behind, worst first, by name on a tie.
	want := []capture.NodeLag{{Node: "node-c", UnreadBytes: 9 * mib}, {Node: "node-a", UnreadBytes: 5 * mib}, {Node: "node-d", UnreadBytes: 5 * mib}}
	if d := cmp.Diff(want, s.Agents.Lagging); d != "" {
		t.Errorf("Lagging (-want +got):\n%s", d)
	}
	if s := f.Snapshot(key, []string{"node-b"}); len(s.Agents.Lagging) != 0 {
		t.Errorf("a node under a MiB behind is named lagging: %v", s.Agents.Lagging)
	}
}
