package control

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/log-capturer/log-capturer/agent/identity"
	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/capture"
)

// Report is what an agent sends on its report period: the cumulative
// numbers of every pipeline it runs, as its workers' Snapshots.
type Report struct {
	// Revision is the configuration the agent runs.
	Revision string `json:"revision"`
	// Pipelines are the agent's pipelines.
	Pipelines []PipelineReport `json:"pipelines"`
	// Final is set on the report an agent sends after its workers stopped
	// (its pod is going): the positions in it are where it left off.
	Final bool `json:"final,omitempty"`
}

// PipelineReport is one pipeline's numbers on one node.
type PipelineReport struct {
	Namespace string           `json:"namespace"`
	Name      string           `json:"name"`
	Snapshot  capture.Snapshot `json:"snapshot"`
	// Positions are where each container of the pipeline on the node was
	// delivered up to (acknowledged by every sink), for the API to resume
	// from if the node's agent goes away.
	Positions []capture.ContainerPosition `json:"positions,omitempty"`
}

// MaxReportBytes bounds one report.
const MaxReportBytes = 8 << 20

// DefaultStaleAfter is how old an agent's last report may be before the
// agent counts as stale: three of the agents' default 10s report periods
// and a margin.
const DefaultStaleAfter = 45 * time.Second

// Fleet keeps the agents' latest reports in memory and sums them per
// pipeline. Reports are cumulative, so a lost one costs nothing but
// freshness, and the operator writes nothing of them to the API server.
type Fleet struct {
	// StaleAfter bounds the age of a report that counts (DefaultStaleAfter
	// when zero).
	StaleAfter time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	mu    sync.Mutex
	nodes map[string]nodeReport
}

type nodeReport struct {
	at        time.Time
	revision  string
	final     bool
	pipelines map[types.NamespacedName]capture.Snapshot
	positions map[types.NamespacedName][]capture.ContainerPosition
}

func (f *Fleet) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

func (f *Fleet) staleAfter() time.Duration {
	if f.StaleAfter > 0 {
		return f.StaleAfter
	}
	return DefaultStaleAfter
}

// Record keeps node's report, replacing its previous one; only the
// pipelines in allowed (those the node was sent) are kept, so that an
// agent cannot speak for another node's pipelines. It returns how many
// pipelines of the report were not allowed.
func (f *Fleet) Record(node string, r Report, allowed map[types.NamespacedName]bool) int {
	nr := nodeReport{at: f.now(), revision: r.Revision, final: r.Final,
		pipelines: make(map[types.NamespacedName]capture.Snapshot, len(r.Pipelines)),
		positions: make(map[types.NamespacedName][]capture.ContainerPosition, len(r.Pipelines))}
	refused := 0
	for _, p := range r.Pipelines {
		key := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
		if !allowed[key] {
			refused++
			continue
		}
		nr.pipelines[key] = p.Snapshot
		if len(p.Positions) > 0 {
			nr.positions[key] = p.Positions
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nodes == nil {
		f.nodes = map[string]nodeReport{}
	}
	f.nodes[node] = nr
	return refused
}

// Positions returns where node's agent last said the pipeline's containers
// were delivered up to, and whether that was its final report (sent after
// its workers stopped: exact; otherwise lines delivered after the report
// may be sent again).
func (f *Fleet) Positions(node string, key types.NamespacedName) ([]capture.ContainerPosition, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	nr, ok := f.nodes[node]
	if !ok {
		return nil, false
	}
	return nr.positions[key], nr.final
}

// Forget drops a pipeline from every node's report (it was deleted).
func (f *Fleet) Forget(key types.NamespacedName) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, nr := range f.nodes {
		delete(nr.pipelines, key)
		delete(nr.positions, key)
	}
}

// ForgetNode drops a node's report (the node is gone).
func (f *Fleet) ForgetNode(node string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.nodes, node)
}

// Snapshot sums key's numbers over nodes, the nodes that run pods the
// pipeline selects, and says which of their agents are missing or stale.
// A stale agent's last numbers are still summed: they are cumulative and
// were true when sent.
func (f *Fleet) Snapshot(key types.NamespacedName, nodes []string) capture.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	now, bound := f.now(), f.staleAfter()
	agents := &capture.Agents{Nodes: len(nodes), StaleAfter: bound}
	parts := map[string]capture.Snapshot{}
	for _, n := range nodes {
		nr, ok := f.nodes[n]
		if !ok {
			agents.Missing = append(agents.Missing, n)
			continue
		}
		if now.Sub(nr.at) > bound {
			agents.Stale = append(agents.Stale, n)
		} else {
			agents.Reporting++
		}
		if s, ok := nr.pipelines[key]; ok {
			parts[n] = s
		}
	}
	slices.Sort(agents.Missing)
	slices.Sort(agents.Stale)
	s := Merge(parts)
	// The workers run while an agent of the pipeline's nodes reports; with
	// no selected pod anywhere none needs to, and the pipeline is not
	// broken for it. Stale reports say what was, not that anything runs.
	s.Running = len(nodes) == 0 || agents.Reporting > 0
	agents.GoroutineGrowthNode, agents.FDGrowthNode = worstGrowth(parts)
	agents.Lagging = lagging(parts)
	s.Agents = agents
	return s
}

// SinkStats sums what the namespace's pipelines delivered to its
// SinkTarget name over every node's latest report, stale ones too (the
// numbers are cumulative and were true when sent). On one node the
// pipelines share the agent's budget (PlusSameBudget, as in the engine);
// over nodes the budget facts add up (PlusOtherBudget), each agent having its own.
func (f *Fleet) SinkStats(namespace, name string) (capture.SinkStats, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := capture.SinkStats{Name: name}
	found := false
	for _, node := range slices.Sorted(maps.Keys(f.nodes)) {
		onNode := capture.SinkStats{Name: name}
		seen := false
		for key, s := range f.nodes[node].pipelines {
			if key.Namespace != namespace {
				continue
			}
			for _, st := range s.Sinks {
				if st.Name != name {
					continue
				}
				seen = true
				onNode = onNode.PlusSameBudget(st)
			}
		}
		if !seen {
			continue
		}
		if !found {
			out, found = onNode, true
			continue
		}
		out = out.PlusOtherBudget(onNode)
	}
	return out, found
}

// Merge sums per-node snapshots of one pipeline. Counts add up; the
// process-wide numbers and growth slopes are the largest node's (a leak
// on one node must not be averaged away); the health window covers what
// every node covered.
func Merge(parts map[string]capture.Snapshot) capture.Snapshot {
	var out capture.Snapshot
	first := true
	sinks := map[string]int{}
	winSinks := map[string]int{}
	for _, node := range slices.Sorted(maps.Keys(parts)) {
		s := parts[node]
		out.Running = out.Running || s.Running
		out.HandingOver = out.HandingOver || s.HandingOver
		out.SelectedContainers += s.SelectedContainers
		out.ActiveStreams += s.ActiveStreams
		out.WaitingStreams += s.WaitingStreams
		out.NamespaceLimited += s.NamespaceLimited
		out.NamespaceStreams += s.NamespaceStreams
		out.NamespaceStreamLimit = max(out.NamespaceStreamLimit, s.NamespaceStreamLimit)
		out.OpenStreams += s.OpenStreams
		out.Rotations += s.Rotations
		out.Reconnects += s.Reconnects
		out.StreamErrors += s.StreamErrors
		out.Goroutines += s.Goroutines
		out.ProcessGoroutines = max(out.ProcessGoroutines, s.ProcessGoroutines)
		out.OpenFDs = max(out.OpenFDs, s.OpenFDs)
		out.TruncatedLines += s.TruncatedLines
		out.MalformedLines += s.MalformedLines
		out.FileContainers += s.FileContainers
		out.UnreadBytes += s.UnreadBytes
		out.Opens += s.Opens
		out.OpenWait += s.OpenWait
		out.OpenRateLimit = max(out.OpenRateLimit, s.OpenRateLimit)
		out.LinesTotal += s.LinesTotal
		out.BytesTotal += s.BytesTotal
		out.LongestWait = max(out.LongestWait, s.LongestWait)
		out.ResumeDuplicates += s.ResumeDuplicates
		out.Gaps += s.Gaps
		out.GapBytes += s.GapBytes
		if s.LastGap != nil && (out.LastGap == nil || s.LastGap.To.After(out.LastGap.To)) {
			g := *s.LastGap
			out.LastGap = &g
		}
		if s.Positions != (capture.PositionsStatus{}) && out.Positions == (capture.PositionsStatus{}) {
			out.Positions = s.Positions
		}
		for _, sk := range s.Sinks {
			i, ok := sinks[sk.Name]
			if !ok {
				sinks[sk.Name] = len(out.Sinks)
				out.Sinks = append(out.Sinks, sk)
				continue
			}
			out.Sinks[i] = out.Sinks[i].PlusOtherBudget(sk)
		}
		w := s.Window
		if first {
			out.Window.Samples, out.Window.Covered = w.Samples, w.Covered
			first = false
		} else {
			out.Window.Samples, out.Window.Covered = min(out.Window.Samples, w.Samples), min(out.Window.Covered, w.Covered)
		}
		out.Window.GoroutineGrowthPerMinute = max(out.Window.GoroutineGrowthPerMinute, w.GoroutineGrowthPerMinute)
		out.Window.FDGrowthPer10Minutes = max(out.Window.FDGrowthPer10Minutes, w.FDGrowthPer10Minutes)
		out.Window.LinesInWindow += w.LinesInWindow
		out.Window.LinesPerSecond += w.LinesPerSecond
		out.Window.GapsInWindow += w.GapsInWindow
		out.Window.OpensInWindow += w.OpensInWindow
		out.Window.OpenWaitInWindow += w.OpenWaitInWindow
		for _, sw := range w.Sinks {
			i, ok := winSinks[sw.Name]
			if !ok {
				winSinks[sw.Name] = len(out.Window.Sinks)
				out.Window.Sinks = append(out.Window.Sinks, sw)
				continue
			}
			out.Window.Sinks[i].Sent += sw.Sent
			out.Window.Sinks[i].Dropped += sw.Dropped
			out.Window.Sinks[i].Rejected += sw.Rejected
		}
	}
	return out
}

// lagging are the MaxLaggingNodes nodes with the most unread bytes, of
// those with at least LagNamedBytes, worst first (by name on a tie).
func lagging(parts map[string]capture.Snapshot) []capture.NodeLag {
	var out []capture.NodeLag
	for node, s := range parts {
		if s.UnreadBytes >= logsv1alpha1.LagNamedBytes {
			out = append(out, capture.NodeLag{Node: node, UnreadBytes: s.UnreadBytes})
		}
	}
	slices.SortFunc(out, func(a, b capture.NodeLag) int {
		if c := cmp.Compare(b.UnreadBytes, a.UnreadBytes); c != 0 {
			return c
		}
		return strings.Compare(a.Node, b.Node)
	})
	return out[:min(len(out), logsv1alpha1.MaxLaggingNodes)]
}

// worstGrowth names the nodes with the steepest goroutine and FD growth.
func worstGrowth(parts map[string]capture.Snapshot) (goroutines, fds string) {
	var g, f float64
	for _, node := range slices.Sorted(maps.Keys(parts)) {
		w := parts[node].Window
		if w.GoroutineGrowthPerMinute > g {
			g, goroutines = w.GoroutineGrowthPerMinute, node
		}
		if w.FDGrowthPer10Minutes > f {
			f, fds = w.FDGrowthPer10Minutes, node
		}
	}
	return goroutines, fds
}

// serveReport takes an agent's POST /v1/report.
func (h *Handler) serveReport(w http.ResponseWriter, r *http.Request, agent identity.Agent) {
	if h.Fleet == nil {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxReportBytes+1))
	if err != nil {
		http.Error(w, "reading the report: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > MaxReportBytes {
		http.Error(w, fmt.Sprintf("the report is over %d bytes", MaxReportBytes), http.StatusRequestEntityTooLarge)
		return
	}
	var rep Report
	if err := json.Unmarshal(body, &rep); err != nil {
		http.Error(w, "decoding the report: "+err.Error(), http.StatusBadRequest)
		return
	}
	sent, err := h.Book.OnNode(r.Context(), h.Pods, agent.Node)
	if err != nil {
		http.Error(w, "the node's configuration could not be computed now; try again", http.StatusServiceUnavailable)
		return
	}
	allowed := make(map[types.NamespacedName]bool, len(sent))
	for _, p := range sent {
		allowed[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = true
	}
	if refused := h.Fleet.Record(agent.Node, rep, allowed); refused > 0 {
		w.Header().Set("X-Refused-Pipelines", fmt.Sprint(refused))
	}
	w.WriteHeader(http.StatusNoContent)
}

// SelectedPods lists the pods a pipeline selects (a cache in the operator).
type SelectedPods interface {
	Selected(ctx context.Context, p capture.PipelineConfig) ([]corev1.Pod, error)
}

// Selected lists the pods of p's namespace its selector matches.
func (c CachePods) Selected(ctx context.Context, p capture.PipelineConfig) ([]corev1.Pod, error) {
	sel, err := selectorOf(p)
	if err != nil {
		return nil, err
	}
	list := &corev1.PodList{}
	if err := c.Reader.List(ctx, list, client.InNamespace(p.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, fmt.Errorf("listing the pods of pipeline %s/%s: %w", p.Namespace, p.Name, err)
	}
	return list.Items, nil
}

// Workers is the controllers' view of pipelines run by node agents: what
// the controllers apply goes into the Book the agents are served from, and
// a pipeline's numbers are the Fleet's sum of the reports of the agents on
// the nodes of its pods.
type Workers struct {
	Book  *Book
	Fleet *Fleet
	Pods  SelectedPods
	// Serves, in auto capture mode, names the nodes agents serve: only
	// theirs count; nil counts every node.
	Serves func(node string) bool
}

// Apply records the pipeline for the agents of its nodes.
func (w *Workers) Apply(_ context.Context, key types.NamespacedName, cfg capture.PipelineConfig) error {
	w.Book.Apply(key, cfg)
	return nil
}

// Remove takes the pipeline from the agents.
func (w *Workers) Remove(_ context.Context, key types.NamespacedName) error {
	w.Book.Remove(key)
	return nil
}

// Delete takes a deleted pipeline from the agents, which delete its
// positions from their journals (NodeConfig.Deleted), and forgets its
// numbers.
func (w *Workers) Delete(_ context.Context, key types.NamespacedName) error {
	w.Book.Delete(key)
	w.Fleet.Forget(key)
	return nil
}

// Snapshot sums the pipeline's numbers over the agents of its nodes.
func (w *Workers) Snapshot(key types.NamespacedName) (capture.Snapshot, bool) {
	cfg, ok := w.Book.Get(key)
	if !ok {
		return capture.Snapshot{}, false
	}
	pods, err := w.Pods.Selected(context.Background(), cfg)
	if err != nil {
		// The cache answers from memory; an error is a broken selector,
		// which the controller refused before applying.
		return capture.Snapshot{Agents: &capture.Agents{}}, true
	}
	seen := map[string]bool{}
	var nodes []string
	for i := range pods {
		n := pods[i].Spec.NodeName
		if n == "" || seen[n] || podDone(&pods[i]) || (w.Serves != nil && !w.Serves(n)) {
			continue
		}
		seen[n] = true
		nodes = append(nodes, n)
	}
	return w.Fleet.Snapshot(key, nodes), true
}

// SinkStats sums a SinkTarget's delivery numbers over the agents'
// reports, for its status.
func (w *Workers) SinkStats(namespace, name string) (capture.SinkStats, bool) {
	return w.Fleet.SinkStats(namespace, name)
}

// podDone tells a pod whose containers all ended for good.
func podDone(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}
