package verdict

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/capture"
)

func TestEvaluate(t *testing.T) {
	now := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	th := Thresholds{MaxGoroutineGrowthPerMinute: 2, MaxFDGrowthPer10Minutes: 50, Window: 10 * time.Minute,
		NoDeliveryTimeout: 5 * time.Minute, RotationInterval: 5 * time.Minute,
		RetryBudget: map[string]time.Duration{"loki": time.Minute, "file": time.Minute}}
	healthy := func() capture.Snapshot {
		return capture.Snapshot{Running: true, SelectedContainers: 10, ActiveStreams: 10, Goroutines: 14, OpenFDs: 40,
			LinesTotal: 60000,
			Window: capture.Window{Samples: 40, Covered: 10 * time.Minute, GoroutineGrowthPerMinute: 0.1,
				FDGrowthPer10Minutes: 1, LinesInWindow: 6000, LinesPerSecond: 10,
				Sinks: []capture.SinkWindow{{Name: "loki", Sent: 6000}}},
			Sinks:     []capture.SinkStats{{Name: "loki", SentLines: 60000, LastSuccess: now.Add(-time.Second), QueueMaxBytes: 100}},
			Positions: capture.PositionsStatus{Reason: capture.PositionsStored, Message: "Positions of 10 containers stored (900 bytes compressed)."}}
	}
	tests := []struct {
		name         string
		mutate       func(*capture.Snapshot)
		workers      string
		flow         string
		notWorking   bool
		degraded     bool
		msgSubstring string
	}{
		{"healthy", func(*capture.Snapshot) {}, logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonHealthy, false, false, "10.00 lines/s"},
		{"not running", func(s *capture.Snapshot) { s.Running = false }, logsv1alpha1.ReasonWorkersNotRunning, logsv1alpha1.ReasonWorkersNotRunning, true, true, ""},
		{"too few samples", func(s *capture.Snapshot) { s.Window.Covered = time.Minute }, logsv1alpha1.ReasonAwaitingMetrics, logsv1alpha1.ReasonHealthy, false, false, ""},
		{"goroutine leak", func(s *capture.Snapshot) { s.Window.GoroutineGrowthPerMinute = 3 }, logsv1alpha1.ReasonGoroutineLeak, logsv1alpha1.ReasonHealthy, false, true, "grow by 3.00 per minute"},
		{"fd leak", func(s *capture.Snapshot) { s.Window.FDGrowthPer10Minutes = 100 }, logsv1alpha1.ReasonFDLeak, logsv1alpha1.ReasonHealthy, false, true, "100.00 per 10 minutes"},
		{"pool saturated", func(s *capture.Snapshot) { s.WaitingStreams, s.LongestWait = 5, 6*time.Minute },
			logsv1alpha1.ReasonStreamPoolSaturated, logsv1alpha1.ReasonHealthy, false, true, "5 containers wait"},
		{"rotation rate limited", func(s *capture.Snapshot) {
			s.Window.OpensInWindow, s.Window.OpenWaitInWindow, s.OpenRateLimit = 100, 4500*time.Second, 50
		}, logsv1alpha1.ReasonRotationRateLimited, logsv1alpha1.ReasonHealthy, false, true, "waited 45s on average to open (100 opens in the last 10m0s) for the operator's log-open rate of 50.00/s"},
		{"opens that waited a little", func(s *capture.Snapshot) {
			s.Window.OpensInWindow, s.Window.OpenWaitInWindow, s.OpenRateLimit = 100, 20*time.Second, 50
		}, logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonHealthy, false, false, ""},
		{"pool busy but turning", func(s *capture.Snapshot) { s.WaitingStreams, s.LongestWait = 5, time.Minute },
			logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonHealthy, false, false, ""},
		{"nothing selected", func(s *capture.Snapshot) {
			s.SelectedContainers, s.LinesTotal, s.Window.LinesInWindow, s.Window.Sinks[0].Sent = 0, 0, 0, 0
		}, logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonIdle, false, false, "matches no container"},
		{"nothing written", func(s *capture.Snapshot) { s.Window.LinesInWindow, s.Window.Sinks[0].Sent = 0, 0 },
			logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonIdle, false, false, "wrote nothing"},
		{"no delivery", func(s *capture.Snapshot) {
			s.Sinks[0].LastSuccess = now.Add(-10 * time.Minute)
			s.Window.Sinks[0].Sent = 0
		}, logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonNoLogsDelivered, true, true, "no sink delivered any for 5m0s"},
		{"all dropped", func(s *capture.Snapshot) { s.Window.Sinks[0] = capture.SinkWindow{Name: "loki", Dropped: 6000} },
			logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonAllDataDropped, true, true, "6000 dropped"},
		{"some rejected by the destination", func(s *capture.Snapshot) {
			s.Window.Sinks[0].Dropped, s.Window.Sinks[0].Rejected = 42, 42
			s.Sinks[0].LastRejection = "loki rejected a batch of 42 lines: destination answered 400: entry too far behind"
		}, logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonDeliveryRejected, false, true, "refused 42 lines in the last 10m0s for good (not retried; counted as dropped): loki rejected"},
		{"some dropped", func(s *capture.Snapshot) { s.Window.Sinks[0].Dropped = 42 },
			logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonSomeDataDropped, false, true, "dropped 42 of 6000"},
		{"sink failing within budget", func(s *capture.Snapshot) { s.Sinks[0].FailingSince = now.Add(-30 * time.Second) },
			logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonHealthy, false, false, ""},
		{"only sink unavailable", func(s *capture.Snapshot) {
			s.Sinks[0].FailingSince, s.Sinks[0].LastError = now.Add(-2*time.Minute), "answered 500"
		}, logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonSinkUnavailable, true, true, "answered 500"},
		{"one of two sinks unavailable", func(s *capture.Snapshot) {
			s.Sinks = append(s.Sinks, capture.SinkStats{Name: "file", FailingSince: now.Add(-2 * time.Minute)})
		}, logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonSinkUnavailable, false, true, "Sink file has failed"},
		{"lines rotated away before capture resumed", func(s *capture.Snapshot) {
			s.Window.GapsInWindow = 2
			s.LastGap = &capture.Gap{Container: "shop/web-1/app", From: now.Add(-3 * time.Minute), To: now.Add(-2 * time.Minute)}
		}, logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonLogsUnrecoverable, false, true, "shop/web-1/app, between 2026-11-27T07:57:00Z and 2026-11-27T07:58:00Z (1m0s)"},
		{"a file the kubelet deleted before it was read", func(s *capture.Snapshot) {
			s.Window.GapsInWindow = 1
			s.LastGap = &capture.Gap{Container: "shop/web-1/app", From: now.Add(-3 * time.Minute), To: now.Add(-2 * time.Minute), Bytes: 10 << 20}
		}, logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonLogsUnrecoverable, false, true, "(1m0s, 10.0 MiB of log)"},
		{"positions cannot be stored", func(s *capture.Snapshot) {
			s.Positions = capture.PositionsStatus{Reason: capture.PositionsWriteFailed, Message: "Writing the positions of 10 containers failed: forbidden."}
		}, logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonHealthy, false, true, "forbidden"},
		{"buffer filling up", func(s *capture.Snapshot) { s.Sinks[0].QueueBytes = 85 },
			logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonBufferFillingUp, false, true, "85% full"},
		{"memory share exhausted, Block", func(s *capture.Snapshot) {
			s.Sinks[0].MemoryShareLimited, s.Sinks[0].LastMemoryShareLimited = 1200, now.Add(-5*time.Second)
			s.Sinks[0].NamespaceQueuedBytes, s.Sinks[0].NamespaceShareBytes = 24<<20, 24<<20
			s.Sinks[0].MemoryBudgetBytes, s.Sinks[0].BudgetNamespaces, s.Sinks[0].WhenFull = 240<<20, 10, "Block"
		}, logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonMemoryShareExhausted, false, true,
			"24.0 MiB of 24.0 MiB (the budget of 240.0 MiB divided between 10 namespaces); 1200 lines of sink loki found it full (Block: the pipeline's readers wait for room and nothing is lost)"},
		{"memory share exhausted, dropping", func(s *capture.Snapshot) {
			s.Sinks[0].MemoryShareLimited, s.Sinks[0].LastMemoryShareLimited, s.Sinks[0].WhenFull = 7, now.Add(-time.Second), "DropOldest"
			s.Window.Sinks[0].Dropped = 7
		}, logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonMemoryShareExhausted, false, true, "DropOldest: the lines were dropped and counted"},
		{"memory share hit long ago", func(s *capture.Snapshot) {
			s.Sinks[0].MemoryShareLimited, s.Sinks[0].LastMemoryShareLimited = 7, now.Add(-10*time.Minute)
		}, logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonHealthy, false, false, ""},
		{"agents reporting from every node", func(s *capture.Snapshot) {
			s.Agents = &capture.Agents{Nodes: 3, Reporting: 3, StaleAfter: 45 * time.Second}
		}, logsv1alpha1.ReasonHealthy, logsv1alpha1.ReasonHealthy, false, false, ""},
		{"agents missing and stale, named", func(s *capture.Snapshot) {
			s.Agents = &capture.Agents{Nodes: 9, Reporting: 2, StaleAfter: 45 * time.Second,
				Missing: []string{"n1", "n2", "n3", "n4", "n5", "n6"}, Stale: []string{"n9"}}
		}, logsv1alpha1.ReasonAgentsMissing, logsv1alpha1.ReasonHealthy, false, true,
			"7 of the 9 nodes that run selected pods have no node agent reporting: 6 never reported (n1, n2, n3, n4, n5 and 1 more); 1 last reported more than 45s ago (n9)"},
		{"no agent reports at all", func(s *capture.Snapshot) {
			s.Running = false
			s.Agents = &capture.Agents{Nodes: 1, StaleAfter: 45 * time.Second, Stale: []string{"n1"}}
		}, logsv1alpha1.ReasonAgentsMissing, logsv1alpha1.ReasonWorkersNotRunning, true, true, "1 last reported more than 45s ago (n1)"},
		{"a leaking agent is named", func(s *capture.Snapshot) {
			s.Window.FDGrowthPer10Minutes = 100
			s.Agents = &capture.Agents{Nodes: 2, Reporting: 2, FDGrowthNode: "node-b"}
		}, logsv1alpha1.ReasonFDLeak, logsv1alpha1.ReasonHealthy, false, true, "The steepest growth is the agent's on node node-b."},
		{"namespace stream limit", func(s *capture.Snapshot) {
			s.WaitingStreams, s.NamespaceLimited, s.LongestWait = 4, 4, 6*time.Minute
			s.NamespaceStreams, s.NamespaceStreamLimit = 20, 20
		}, logsv1alpha1.ReasonStreamPoolSaturated, logsv1alpha1.ReasonHealthy, false, true, "hold 20 streams, the limit per namespace (20, from the operator's --max-streams-per-namespace); this pipeline holds 10"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := healthy()
			tc.mutate(&s)
			v := Evaluate(s, th, now)
			if v.Workers.Reason != tc.workers || v.Flow.Reason != tc.flow || v.NotWorking != tc.notWorking || v.Degraded != tc.degraded {
				t.Fatalf("got workers=%s flow=%s notWorking=%v degraded=%v\n%s\n%s",
					v.Workers.Reason, v.Flow.Reason, v.NotWorking, v.Degraded, v.Workers.Message, v.Flow.Message)
			}
			msg := v.Workers.Message + " " + v.Flow.Message + " " + v.Positions.Message
			if !strings.Contains(msg, tc.msgSubstring) {
				t.Fatalf("messages %q lack %q", msg, tc.msgSubstring)
			}
			if (v.Workers.Reason == logsv1alpha1.ReasonHealthy) != (v.Workers.Status == metav1.ConditionTrue) {
				t.Fatalf("workers status %s with reason %s", v.Workers.Status, v.Workers.Reason)
			}
		})
	}
}

func TestDecimal(t *testing.T) {
	for in, want := range map[float64]string{0: "0.00", 2.5: "2.50", -0.049: "-0.05", 1234.567: "1234.57"} {
		if got := Decimal(in); got != want {
			t.Errorf("Decimal(%v) = %s, want %s", in, got, want)
		}
	}
}

func TestPositionsCondition(t *testing.T) {
	for _, tc := range []struct {
		reason string
		status metav1.ConditionStatus
		want   string
	}{
		{capture.PositionsStored, metav1.ConditionTrue, logsv1alpha1.ReasonPositionsStored},
		{capture.PositionsReset, metav1.ConditionTrue, logsv1alpha1.ReasonPositionsReset},
		{capture.PositionsForeign, metav1.ConditionFalse, logsv1alpha1.ReasonPositionsForeign},
		{capture.PositionsWriteFailed, metav1.ConditionFalse, logsv1alpha1.ReasonPositionsWriteFailed},
		{capture.PositionsInMemory, metav1.ConditionUnknown, logsv1alpha1.ReasonPositionsInMemory},
		{"", metav1.ConditionUnknown, logsv1alpha1.ReasonPositionsLoading},
	} {
		c := positions(capture.Snapshot{Running: true, Positions: capture.PositionsStatus{Reason: tc.reason, Message: "m"}})
		if c.Status != tc.status || c.Reason != tc.want {
			t.Errorf("%q: got %s/%s, want %s/%s", tc.reason, c.Status, c.Reason, tc.status, tc.want)
		}
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 24 << 20: "24.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
