// Package control is the operator's side of the link to its node agents:
// it keeps the pipelines the controllers applied and serves each agent
// the configuration of its own node only — the pipelines that select pods
// on that node, with the credentials of their sinks and no others. The
// agent proves its node with a token (package identity); what it asks for
// is never taken on its word.
package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/log-capturer/log-capturer/agent/identity"
	"github.com/log-capturer/log-capturer/capture"
)

// NodeConfig is what an agent is sent: the pipelines with pods on its node.
type NodeConfig struct {
	// Node is the agent's node, from its verified identity.
	Node string `json:"node"`
	// Revision changes whenever anything in Pipelines does.
	Revision string `json:"revision"`
	// Pipelines are sorted by namespace and name.
	Pipelines []capture.PipelineConfig `json:"pipelines"`
	// Deleted are the pipelines deleted in the last TombstoneTTL, sorted:
	// an agent deletes their positions from its journal (once).
	Deleted []capture.PipelineRef `json:"deleted,omitempty"`
	// Pending names the pipelines of the node still read through the API
	// (auto capture mode): they come once the API engine released the
	// node's containers, with the positions it reached.
	Pending []string `json:"pending,omitempty"`
}

// Handover is the API engine's side of the auto capture mode: whether it
// released a pipeline's containers on a node, and where it delivered them
// up to.
type Handover interface {
	Handed(key types.NamespacedName, node string) ([]capture.ContainerPosition, bool)
}

// TombstoneTTL is how long a deleted pipeline is announced to the agents;
// MaxTombstones bounds how many are, the oldest dropped first. An agent
// away longer keeps the deleted pipeline's positions in its journal.
const (
	TombstoneTTL  = 24 * time.Hour
	MaxTombstones = 10000
)

// Pods lists the pods scheduled to a node (a cache with a spec.nodeName
// index in the operator).
type Pods interface {
	PodsOnNode(ctx context.Context, node string) ([]corev1.Pod, error)
}

// Verifier tells which agent a token belongs to.
type Verifier interface {
	Verify(ctx context.Context, token string) (identity.Agent, error)
}

// Book holds the pipelines the controllers applied and wakes the agents
// waiting for a change.
type Book struct {
	// Serves and Handover are set in auto capture mode: a node's agent is
	// sent nothing unless Serves says it serves the node, and a pipeline
	// only once Handover released its containers there, with their
	// positions.
	Serves   func(node string) bool
	Handover Handover

	mu        sync.Mutex
	pipelines map[types.NamespacedName]capture.PipelineConfig
	deleted   map[types.NamespacedName]tombstone
	changed   chan struct{}
	// handed are the positions the API engine released, by node and
	// pipeline, kept while the node stays with its agent.
	handed map[string]map[types.NamespacedName][]capture.ContainerPosition
	// now is the clock (time.Now when nil).
	now func() time.Time
}

type tombstone struct {
	ref capture.PipelineRef
	at  time.Time
}

// NewBook returns an empty Book.
func NewBook() *Book {
	return &Book{pipelines: map[types.NamespacedName]capture.PipelineConfig{}, deleted: map[types.NamespacedName]tombstone{},
		handed: map[string]map[types.NamespacedName][]capture.ContainerPosition{}, changed: make(chan struct{}), now: time.Now}
}

// Apply adds or replaces a pipeline.
func (b *Book) Apply(key types.NamespacedName, cfg capture.PipelineConfig) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pipelines[key] = cfg
	// A pipeline made again under a deleted one's name is not deleted.
	delete(b.deleted, key)
	b.notifyLocked()
}

// Delete forgets a deleted pipeline and announces it to the agents for
// TombstoneTTL, so that they delete its positions.
func (b *Book) Delete(key types.NamespacedName) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cfg, ok := b.pipelines[key]
	delete(b.pipelines, key)
	ref := capture.PipelineRef{Namespace: key.Namespace, Name: key.Name}
	if ok {
		ref.UID = cfg.UID
	}
	b.deleted[key] = tombstone{ref: ref, at: b.now()}
	for _, h := range b.handed {
		delete(h, key)
	}
	b.pruneLocked()
	b.notifyLocked()
}

// pruneLocked drops tombstones past TombstoneTTL and beyond MaxTombstones.
func (b *Book) pruneLocked() {
	now := b.now()
	for k, t := range b.deleted {
		if now.Sub(t.at) > TombstoneTTL {
			delete(b.deleted, k)
		}
	}
	for len(b.deleted) > MaxTombstones {
		var oldest types.NamespacedName
		first := true
		for k, t := range b.deleted {
			if first || t.at.Before(b.deleted[oldest].at) {
				oldest, first = k, false
			}
		}
		delete(b.deleted, oldest)
	}
}

// Get returns a pipeline's configuration.
func (b *Book) Get(key types.NamespacedName) (capture.PipelineConfig, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.pipelines[key]
	return c, ok
}

// Keys returns the pipelines of the Book.
func (b *Book) Keys() []types.NamespacedName {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Collect(maps.Keys(b.pipelines))
}

// Remove forgets a pipeline; an unknown one is no error.
func (b *Book) Remove(key types.NamespacedName) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.pipelines[key]; ok {
		delete(b.pipelines, key)
		b.notifyLocked()
	}
}

// ForgetNode drops what the API engine handed over on node: the node went
// back to the API, and a later handover brings newer positions.
func (b *Book) ForgetNode(node string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.handed, node)
	b.notifyLocked()
}

// released returns the API engine's positions of key on node once it
// released them, remembering them.
func (b *Book) released(key types.NamespacedName, node string) ([]capture.ContainerPosition, bool) {
	b.mu.Lock()
	pos, ok := b.handed[node][key]
	b.mu.Unlock()
	if ok {
		return pos, true
	}
	pos, ok = b.Handover.Handed(key, node)
	if !ok {
		return nil, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.handed[node] == nil {
		b.handed[node] = map[types.NamespacedName][]capture.ContainerPosition{}
	}
	b.handed[node][key] = pos
	return pos, true
}

// Notify wakes the waiting agents to look again, for a change the Book
// does not see itself (a pod scheduled to or gone from a node).
func (b *Book) Notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.notifyLocked()
}

func (b *Book) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// snapshot returns the pipelines, sorted, and the channel closed at the
// next change.
func (b *Book) snapshot() ([]capture.PipelineConfig, []capture.PipelineRef, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pruneLocked()
	var deleted []capture.PipelineRef
	for _, t := range b.deleted {
		deleted = append(deleted, t.ref)
	}
	slices.SortFunc(deleted, func(a, b capture.PipelineRef) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	out := make([]capture.PipelineConfig, 0, len(b.pipelines))
	for _, c := range b.pipelines {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b capture.PipelineConfig) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	return out, deleted, b.changed
}

// ForNode returns the configuration of node: every pipeline whose
// selector matches a pod of its namespace scheduled to the node.
func (b *Book) ForNode(ctx context.Context, pods Pods, node string) (NodeConfig, <-chan struct{}, error) {
	all, deleted, changed := b.snapshot()
	podsOn, err := pods.PodsOnNode(ctx, node)
	if err != nil {
		return NodeConfig{}, nil, fmt.Errorf("listing the pods of node %s: %w", node, err)
	}
	nc := NodeConfig{Node: node, Pipelines: matching(podsOn, node, all), Deleted: deleted}
	if b.Serves != nil && !b.Serves(node) {
		nc.Pipelines = []capture.PipelineConfig{} // the API reads the node
	}
	if b.Handover != nil && len(nc.Pipelines) > 0 {
		// The positions of the node's own containers only: not a word of
		// another node's pods to this agent.
		own := make(map[string]bool, len(podsOn))
		for i := range podsOn {
			own[string(podsOn[i].UID)] = true
		}
		ready := make([]capture.PipelineConfig, 0, len(nc.Pipelines))
		for _, p := range nc.Pipelines {
			key := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
			pos, ok := b.released(key, node)
			if !ok {
				nc.Pending = append(nc.Pending, key.String())
				continue
			}
			for _, cp := range pos {
				if own[cp.UID] {
					p.Resume = append(p.Resume, cp)
				}
			}
			ready = append(ready, p)
		}
		nc.Pipelines = ready
	}
	body, err := json.Marshal(struct {
		P []capture.PipelineConfig
		D []capture.PipelineRef
		W []string
	}{nc.Pipelines, nc.Deleted, nc.Pending})
	if err != nil {
		return NodeConfig{}, nil, fmt.Errorf("encoding the configuration of node %s: %w", node, err)
	}
	sum := sha256.Sum256(body)
	nc.Revision = hex.EncodeToString(sum[:12])
	return nc, changed, nil
}

// OnNode lists the pipelines with pods on node, what ForNode would send
// it, without encoding them.
func (b *Book) OnNode(ctx context.Context, pods Pods, node string) ([]capture.PipelineConfig, error) {
	all, _, _ := b.snapshot()
	return onNode(ctx, pods, node, all)
}

// onNode keeps of all the pipelines whose selector matches a pod of their
// namespace scheduled to node.
func onNode(ctx context.Context, pods Pods, node string, all []capture.PipelineConfig) ([]capture.PipelineConfig, error) {
	podsOn, err := pods.PodsOnNode(ctx, node)
	if err != nil {
		return nil, fmt.Errorf("listing the pods of node %s: %w", node, err)
	}
	return matching(podsOn, node, all), nil
}

// matching keeps of all the pipelines whose selector matches one of podsOn
// of their namespace scheduled to node.
func matching(podsOn []corev1.Pod, node string, all []capture.PipelineConfig) []capture.PipelineConfig {
	out := []capture.PipelineConfig{}
	for _, p := range all {
		sel, err := selectorOf(p)
		if err != nil {
			continue // the controller refused it; it has no workers either
		}
		for i := range podsOn {
			pod := &podsOn[i]
			if pod.Namespace == p.Namespace && pod.Spec.NodeName == node && sel.Matches(labels.Set(pod.Labels)) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// Handler serves GET /v1/config to agents: the configuration of the
// node their token names, as JSON. With If-None-Match set to the revision
// the agent has, it waits up to ?wait= (at most MaxWait) for a change and
// answers 304 Not Modified when there was none, so that a change reaches a
// running agent within a round trip.
type Handler struct {
	Book     *Book
	Pods     Pods
	Verifier Verifier
	// Fleet takes the agents' reports (POST /v1/report); nil refuses them.
	Fleet *Fleet
	// MaxWait bounds ?wait= (1 minute when zero).
	MaxWait time.Duration
	// Ready, when set, is asked before a configuration is served: while it
	// returns an error (the operator has not yet applied the pipelines it
	// found at start) agents get 503 and keep running what they have,
	// rather than an empty configuration that would stop their workers.
	Ready func() error
}

// ServeHTTP answers one agent's request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/config":
	case r.Method == http.MethodPost && r.URL.Path == "/v1/report":
	default:
		http.NotFound(w, r)
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		token = ""
	}
	agent, err := h.Verifier.Verify(r.Context(), token)
	switch {
	case errors.Is(err, identity.ErrRefused):
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	case err != nil:
		http.Error(w, "the agent's identity could not be checked now; try again", http.StatusServiceUnavailable)
		return
	}
	if node := r.URL.Query().Get("node"); node != "" {
		if err := identity.Authorize(agent, node); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
	}
	if r.Method == http.MethodPost {
		h.serveReport(w, r, agent)
		return
	}
	if h.Ready != nil {
		if err := h.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	wait, err := h.wait(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	have := strings.Trim(r.Header.Get("If-None-Match"), `"`)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		nc, changed, err := h.Book.ForNode(r.Context(), h.Pods, agent.Node)
		if err != nil {
			http.Error(w, "the node's configuration could not be computed now; try again", http.StatusServiceUnavailable)
			return
		}
		if have == "" || nc.Revision != have {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("ETag", `"`+nc.Revision+`"`)
			_ = json.NewEncoder(w).Encode(nc)
			return
		}
		var poll <-chan time.Time
		if len(nc.Pending) > 0 {
			// The API engine's release is not a Book change: look again
			// soon (an unstopped timer is collected since Go 1.23).
			poll = time.After(250 * time.Millisecond)
		}
		select {
		case <-changed:
		case <-poll:
		case <-deadline.C:
			w.Header().Set("ETag", `"`+nc.Revision+`"`)
			w.WriteHeader(http.StatusNotModified)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// wait is the request's ?wait=, within MaxWait; zero without one.
func (h *Handler) wait(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("wait=%q is not a duration such as 30s", v)
	}
	limit := h.MaxWait
	if limit <= 0 {
		limit = time.Minute
	}
	return min(d, limit), nil
}

// selectorOf is a pipeline's pod selector; nil selects every pod.
func selectorOf(p capture.PipelineConfig) (labels.Selector, error) {
	if p.Selector == nil {
		return labels.Everything(), nil
	}
	s, err := metav1.LabelSelectorAsSelector(p.Selector)
	if err != nil {
		return nil, fmt.Errorf("pipeline %s/%s: %w", p.Namespace, p.Name, err)
	}
	return s, nil
}

// NodeNameField is the field index of pods by the node they run on.
const NodeNameField = "spec.nodeName"

// IndexPodsByNode registers NodeNameField on the cache's pods; call it
// before the cache starts.
func IndexPodsByNode(ctx context.Context, indexer client.FieldIndexer) error {
	err := indexer.IndexField(ctx, &corev1.Pod{}, NodeNameField, func(o client.Object) []string {
		if p, ok := o.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("indexing pods by node: %w", err)
	}
	return nil
}

// CachePods lists pods from a cache indexed with IndexPodsByNode.
type CachePods struct{ Reader client.Reader }

// PodsOnNode lists the pods scheduled to node.
func (c CachePods) PodsOnNode(ctx context.Context, node string) ([]corev1.Pod, error) {
	list := &corev1.PodList{}
	if err := c.Reader.List(ctx, list, client.MatchingFields{NodeNameField: node}); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	return list.Items, nil
}
