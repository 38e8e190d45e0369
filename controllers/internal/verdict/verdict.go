// Package verdict judges a pipeline's worker numbers against its thresholds
// and says, with the numbers, whether the workers are healthy and whether
// logs flow. It is pure: the controller feeds it a runtime Snapshot.
package verdict

import (
	"cmp"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/capture"
)

// Thresholds are what the numbers are judged against.
type Thresholds struct {
	MaxGoroutineGrowthPerMinute float64
	MaxFDGrowthPer10Minutes     float64
	Window                      time.Duration
	NoDeliveryTimeout           time.Duration
	RotationInterval            time.Duration
	// RetryBudget is each sink's retry.maxBackoff, by sink name.
	RetryBudget map[string]time.Duration
	// StreamLimitSource says who set the namespace's stream limit ("the
	// operator's --max-streams-per-namespace" when empty).
	StreamLimitSource string
}

// Condition is one condition's verdict.
type Condition struct {
	Status  metav1.ConditionStatus
	Reason  string
	Message string
}

// Verdict is the judgement of one snapshot.
type Verdict struct {
	Workers   Condition
	Flow      Condition
	Positions Condition
	// NotWorking is true when no line can reach any sink: Ready is False.
	NotWorking bool
	// Degraded is true when the pipeline works with a problem: Ready stays
	// True with reason Degraded.
	Degraded bool
}

// bufferFillingUp is the queue fill above which flow is degraded.
const bufferFillingUp = 0.8

// memoryShareRecent is how long after a line last found its namespace's
// memory share full the flow says so.
const memoryShareRecent = 30 * time.Second

// minCoverage is the share of the window the samples must span before a
// growth slope is trusted.
const minCoverage = 0.5

// Evaluate judges s.
func Evaluate(s capture.Snapshot, t Thresholds, now time.Time) Verdict {
	v := Verdict{Workers: workers(s, t), Flow: flow(s, t, now), Positions: positions(s)}
	v.Degraded = v.Workers.Status == metav1.ConditionFalse || v.Flow.Status == metav1.ConditionFalse ||
		v.Positions.Status == metav1.ConditionFalse
	switch v.Flow.Reason {
	case logsv1alpha1.ReasonNoLogsDelivered, logsv1alpha1.ReasonAllDataDropped:
		v.NotWorking = true
	case logsv1alpha1.ReasonSinkUnavailable:
		v.NotWorking = allSinksFailing(s, t, now)
	}
	if !s.Running {
		v.NotWorking = true
	}
	return v
}

func workers(s capture.Snapshot, t Thresholds) Condition {
	h := s.Window
	if a := s.Agents; a != nil && len(a.Missing)+len(a.Stale) > 0 {
		return Condition{metav1.ConditionFalse, logsv1alpha1.ReasonAgentsMissing, agentsMissing(a)}
	}
	if !s.Running {
		return Condition{metav1.ConditionFalse, logsv1alpha1.ReasonWorkersNotRunning,
			"No worker runs for this pipeline in this replica (it is not the leader, or the workers stopped)."}
	}
	if h.Samples < 3 || h.Covered < time.Duration(minCoverage*float64(t.Window)) {
		return Condition{metav1.ConditionUnknown, logsv1alpha1.ReasonAwaitingMetrics,
			fmt.Sprintf("%d samples over %s so far; growth is judged once they span %s of the %s window.",
				h.Samples, h.Covered.Round(time.Second), time.Duration(minCoverage*float64(t.Window)).Round(time.Second), t.Window)}
	}
	if h.GoroutineGrowthPerMinute > t.MaxGoroutineGrowthPerMinute {
		return Condition{metav1.ConditionFalse, logsv1alpha1.ReasonGoroutineLeak,
			fmt.Sprintf("The workers' goroutines not explained by open streams grow by %s per minute over the last %s (threshold %s); the pipeline owns %d goroutines for %d active streams.",
				Decimal(h.GoroutineGrowthPerMinute), h.Covered.Round(time.Second), Decimal(t.MaxGoroutineGrowthPerMinute), s.Goroutines, s.ActiveStreams) +
				onNode(s.Agents, func(a *capture.Agents) string { return a.GoroutineGrowthNode })}
	}
	if h.FDGrowthPer10Minutes > t.MaxFDGrowthPer10Minutes {
		return Condition{metav1.ConditionFalse, logsv1alpha1.ReasonFDLeak,
			fmt.Sprintf("The process's open file descriptors grow by %s per 10 minutes over the last %s (threshold %s); %d are open.",
				Decimal(h.FDGrowthPer10Minutes), h.Covered.Round(time.Second), Decimal(t.MaxFDGrowthPer10Minutes), s.OpenFDs) +
				onNode(s.Agents, func(a *capture.Agents) string { return a.FDGrowthNode })}
	}
	if h.OpensInWindow > 0 {
		avg := h.OpenWaitInWindow / time.Duration(h.OpensInWindow)
		if avg > max(time.Second, t.RotationInterval/10) {
			need := float64(s.SelectedContainers) / t.RotationInterval.Seconds()
			return Condition{metav1.ConditionFalse, logsv1alpha1.ReasonRotationRateLimited,
				fmt.Sprintf("Streams waited %s on average to open (%d opens in the last %s) for the operator's log-open rate of %s/s, which all namespaces share; %d containers rotating every %s need %s opens/s of it. Lengthen spec.rotation.interval, or ask the operator's admin to raise --log-open-rate.",
					avg.Round(time.Millisecond), h.OpensInWindow, h.Covered.Round(time.Second), Decimal(s.OpenRateLimit),
					s.SelectedContainers, t.RotationInterval, Decimal(need))}
		}
	}
	if s.WaitingStreams > 0 && s.LongestWait > t.RotationInterval {
		if s.NamespaceLimited > 0 {
			return Condition{metav1.ConditionFalse, logsv1alpha1.ReasonStreamPoolSaturated,
				fmt.Sprintf("%d containers wait for a stream; the longest has waited %s, more than the rotation interval %s. The namespace's pipelines hold %d streams, the limit per namespace (%d, from %s); this pipeline holds %d.",
					s.WaitingStreams, s.LongestWait.Round(time.Millisecond), t.RotationInterval, s.NamespaceStreams, s.NamespaceStreamLimit,
					cmp.Or(t.StreamLimitSource, "the operator's --max-streams-per-namespace"), s.ActiveStreams)}
		}
		return Condition{metav1.ConditionFalse, logsv1alpha1.ReasonStreamPoolSaturated,
			fmt.Sprintf("%d containers wait for one of %d stream slots; the longest has waited %s, more than the rotation interval %s.",
				s.WaitingStreams, s.ActiveStreams, s.LongestWait.Round(time.Millisecond), t.RotationInterval)}
	}
	return Condition{metav1.ConditionTrue, logsv1alpha1.ReasonHealthy,
		fmt.Sprintf("%d goroutines for %d active streams; unexplained goroutine growth %s/min (threshold %s), FD growth %s/10min (threshold %s).",
			s.Goroutines, s.ActiveStreams, Decimal(h.GoroutineGrowthPerMinute), Decimal(t.MaxGoroutineGrowthPerMinute),
			Decimal(h.FDGrowthPer10Minutes), Decimal(t.MaxFDGrowthPer10Minutes))}
}

func flow(s capture.Snapshot, t Thresholds, now time.Time) Condition {
	h := s.Window
	if !s.Running {
		return Condition{metav1.ConditionUnknown, logsv1alpha1.ReasonWorkersNotRunning, "No worker runs, so no line flows."}
	}
	if h.Samples < 2 {
		return Condition{metav1.ConditionUnknown, logsv1alpha1.ReasonAwaitingMetrics,
			fmt.Sprintf("%d samples so far; flow is judged from two on.", h.Samples)}
	}
	var dropped, sent int64
	for _, w := range h.Sinks {
		dropped += w.Dropped
		sent += w.Sent
	}
	lastSuccess := latestSuccess(s)
	if h.LinesInWindow > 0 && sent == 0 && allDropped(h) {
		return Condition{metav1.ConditionFalse, logsv1alpha1.ReasonAllDataDropped,
			fmt.Sprintf("Every sink dropped everything it got in the last %s: %d lines read, %d dropped.",
				h.Covered.Round(time.Second), h.LinesInWindow, dropped)}
	}
	if h.GapsInWindow > 0 && s.LastGap != nil {
		g := s.LastGap
		size := ""
		if g.Bytes > 0 {
			size = ", " + Bytes(g.Bytes) + " of log"
		}
		return Condition{metav1.ConditionFalse, logsv1alpha1.ReasonLogsUnrecoverable,
			fmt.Sprintf("%d times in the last %s a container's log no longer held the lines after its position when capture resumed, so they are lost; the latest: %s, between %s and %s (%s%s). The kubelet rotated them away, or the container restarted more than once.",
				h.GapsInWindow, h.Covered.Round(time.Second), g.Container, stamp(g.From), stamp(g.To), g.To.Sub(g.From).Round(time.Millisecond), size)}
	}
	for _, sk := range s.Sinks {
		if !sk.LastMemoryShareLimited.IsZero() && now.Sub(sk.LastMemoryShareLimited) < memoryShareRecent {
			effect := "Block: the pipeline's readers wait for room and nothing is lost"
			if sk.WhenFull != "" && sk.WhenFull != "Block" {
				effect = sk.WhenFull + ": the lines were dropped and counted"
			}
			return Condition{metav1.ConditionFalse, logsv1alpha1.ReasonMemoryShareExhausted,
				fmt.Sprintf("The namespace's queued lines fill its share of the operator's memory budget: %s of %s (the budget of %s divided between %d namespaces); %d lines of sink %s found it full (%s). Other namespaces are not affected. Fix or speed up the destination, or ask the operator's admin to raise --memory-budget.",
					Bytes(sk.NamespaceQueuedBytes), Bytes(sk.NamespaceShareBytes), Bytes(sk.MemoryBudgetBytes), sk.BudgetNamespaces,
					sk.MemoryShareLimited, sk.Name, effect)}
		}
	}
	for _, w := range h.Sinks {
		if w.Rejected > 0 {
			last := ""
			for _, sk := range s.Sinks {
				if sk.Name == w.Name {
					last = sk.LastRejection
				}
			}
			return Condition{metav1.ConditionFalse, logsv1alpha1.ReasonDeliveryRejected,
				fmt.Sprintf("Sink %s's destination refused %d lines in the last %s for good (not retried; counted as dropped): %s",
					w.Name, w.Rejected, h.Covered.Round(time.Second), last)}
		}
	}
	if dropped > 0 {
		return Condition{metav1.ConditionFalse, logsv1alpha1.ReasonSomeDataDropped,
			fmt.Sprintf("Sinks dropped %d of %d lines read in the last %s (%s).",
				dropped, h.LinesInWindow, h.Covered.Round(time.Second), perSinkDrops(h))}
	}
	for _, sk := range s.Sinks {
		if budget := t.RetryBudget[sk.Name]; !sk.FailingSince.IsZero() && now.Sub(sk.FailingSince) > budget {
			return Condition{metav1.ConditionFalse, logsv1alpha1.ReasonSinkUnavailable,
				fmt.Sprintf("Sink %s has failed for %s, longer than its retry budget %s (%d failed attempts): %s",
					sk.Name, now.Sub(sk.FailingSince).Round(time.Second), budget, sk.FailedBatches, sk.LastError)}
		}
	}
	if s.LinesTotal > 0 && stale(lastSuccess, now, t.NoDeliveryTimeout) && h.LinesInWindow > 0 {
		return Condition{metav1.ConditionFalse, logsv1alpha1.ReasonNoLogsDelivered,
			fmt.Sprintf("%d lines were read in the last %s but no sink delivered any for %s (last delivery: %s).",
				h.LinesInWindow, h.Covered.Round(time.Second), t.NoDeliveryTimeout, since(lastSuccess, now))}
	}
	for _, sk := range s.Sinks {
		if sk.QueueMaxBytes > 0 && float64(sk.QueueBytes) > bufferFillingUp*float64(sk.QueueMaxBytes) {
			return Condition{metav1.ConditionFalse, logsv1alpha1.ReasonBufferFillingUp,
				fmt.Sprintf("Sink %s's queue is %d%% full (%d of %d bytes).",
					sk.Name, 100*sk.QueueBytes/sk.QueueMaxBytes, sk.QueueBytes, sk.QueueMaxBytes)}
		}
	}
	if s.SelectedContainers == 0 {
		return Condition{metav1.ConditionTrue, logsv1alpha1.ReasonIdle, "The selector matches no container; nothing to capture."}
	}
	if h.LinesInWindow == 0 {
		return Condition{metav1.ConditionTrue, logsv1alpha1.ReasonIdle,
			fmt.Sprintf("The %d selected containers wrote nothing in the last %s.", s.SelectedContainers, h.Covered.Round(time.Second))}
	}
	return Condition{metav1.ConditionTrue, logsv1alpha1.ReasonHealthy,
		fmt.Sprintf("%s lines/s read from %d containers; %d lines read and delivered to %d sinks with no drops (last delivery: %s).",
			Decimal(h.LinesPerSecond), s.SelectedContainers, s.LinesTotal, len(s.Sinks), since(lastSuccess, now))}
}

// maxNamedNodes bounds the nodes a message names.
const maxNamedNodes = 5

// agentsMissing says which nodes' agents do not report.
func agentsMissing(a *capture.Agents) string {
	var parts []string
	if len(a.Missing) > 0 {
		parts = append(parts, fmt.Sprintf("%d never reported (%s)", len(a.Missing), nodeList(a.Missing)))
	}
	if len(a.Stale) > 0 {
		parts = append(parts, fmt.Sprintf("%d last reported more than %s ago (%s)", len(a.Stale), a.StaleAfter.Round(time.Second), nodeList(a.Stale)))
	}
	return fmt.Sprintf("%d of the %d nodes that run selected pods have no node agent reporting: %s; their pods' logs wait in the kubelet's files (which rotate them away in time) until an agent reads them. Check the agent DaemonSet's pods on those nodes.",
		len(a.Missing)+len(a.Stale), a.Nodes, strings.Join(parts, "; "))
}

// nodeList names at most maxNamedNodes nodes.
func nodeList(nodes []string) string {
	if len(nodes) <= maxNamedNodes {
		return strings.Join(nodes, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(nodes[:maxNamedNodes], ", "), len(nodes)-maxNamedNodes)
}

// onNode names the node a number comes from when agents run the workers.
func onNode(a *capture.Agents, node func(*capture.Agents) string) string {
	if a == nil || node(a) == "" {
		return ""
	}
	return " The steepest growth is the agent's on node " + node(a) + "."
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "the start of the log"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// positions judges how the pipeline's positions are stored.
func positions(s capture.Snapshot) Condition {
	p := s.Positions
	if !s.Running {
		return Condition{metav1.ConditionUnknown, logsv1alpha1.ReasonWorkersNotRunning, "No worker runs, so no position is stored."}
	}
	switch p.Reason {
	case capture.PositionsStored:
		return Condition{metav1.ConditionTrue, logsv1alpha1.ReasonPositionsStored, p.Message}
	case capture.PositionsReset:
		return Condition{metav1.ConditionTrue, logsv1alpha1.ReasonPositionsReset, p.Message}
	case capture.PositionsForeign:
		return Condition{metav1.ConditionFalse, logsv1alpha1.ReasonPositionsForeign, p.Message}
	case capture.PositionsWriteFailed:
		return Condition{metav1.ConditionFalse, logsv1alpha1.ReasonPositionsWriteFailed, p.Message}
	case capture.PositionsInMemory:
		return Condition{metav1.ConditionUnknown, logsv1alpha1.ReasonPositionsInMemory, p.Message}
	}
	return Condition{metav1.ConditionUnknown, logsv1alpha1.ReasonPositionsLoading, "The workers have not read the stored positions yet."}
}

func allDropped(h capture.Window) bool {
	if len(h.Sinks) == 0 {
		return false
	}
	for _, w := range h.Sinks {
		if w.Dropped == 0 || w.Sent > 0 {
			return false
		}
	}
	return true
}

func allSinksFailing(s capture.Snapshot, t Thresholds, now time.Time) bool {
	for _, sk := range s.Sinks {
		if sk.FailingSince.IsZero() || now.Sub(sk.FailingSince) <= t.RetryBudget[sk.Name] {
			return false
		}
	}
	return len(s.Sinks) > 0
}

func latestSuccess(s capture.Snapshot) time.Time {
	var t time.Time
	for _, sk := range s.Sinks {
		if sk.LastSuccess.After(t) {
			t = sk.LastSuccess
		}
	}
	return t
}

func stale(last, now time.Time, timeout time.Duration) bool {
	return last.IsZero() || now.Sub(last) > timeout
}

func since(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

func perSinkDrops(h capture.Window) string {
	parts := make([]string, 0, len(h.Sinks))
	for _, w := range h.Sinks {
		parts = append(parts, fmt.Sprintf("%s: %d", w.Name, w.Dropped))
	}
	return strings.Join(parts, ", ")
}

// Decimal formats a measured number with two decimals, the way it appears
// in status (no floats in the API).
func Decimal(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "0"
	}
	return strconv.FormatFloat(f, 'f', 2, 64)
}

// Bytes writes n bytes in binary units with one decimal: "12.5 MiB".
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	tenths := n * 10 / div
	return fmt.Sprintf("%d.%d %ciB", tenths/10, tenths%10, "KMGTP"[exp])
}
