package control

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// DefaultHandBackAfter is how long a node stays with its agent after its
// last agent pod went: longer than a DaemonSet takes to recreate a deleted
// pod, so that the node is not handed to the API and back.
const DefaultHandBackAfter = 20 * time.Second

// Modes tells, in the operator's auto capture mode, which nodes a node
// agent serves: those with an agent pod (running, starting or being
// replaced), and for HandBackAfter after the last one went. The API
// engine reads the other nodes' pods. It is computed from the operator's
// pod cache once a second and on Kick, and OnChange hears every node that
// turns.
type Modes struct {
	// Pods is the operator's pod cache, indexed by node.
	Pods client.Reader
	// Namespace and ServiceAccount find the agent pods: those that can
	// present the identity the agent endpoint accepts.
	Namespace      string
	ServiceAccount string
	// HandBackAfter is DefaultHandBackAfter when zero.
	HandBackAfter time.Duration
	// OnChange is called, from Start's goroutine and never under a lock,
	// with the nodes that turned to their agent (agent true) or back to
	// the API.
	OnChange func(ctx context.Context, node string, agent bool)
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	mu       sync.Mutex
	computed bool
	serving  map[string]bool
	lastSeen map[string]time.Time
	kick     chan struct{}
	kickOnce sync.Once
}

func (m *Modes) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Modes) kicks() chan struct{} {
	m.kickOnce.Do(func() { m.kick = make(chan struct{}, 1) })
	return m.kick
}

// Serves tells whether node's agent reads its pods. The first call
// computes the answer from the cache (the manager's caches are synced
// before the engine that asks runs).
func (m *Modes) Serves(node string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.computed {
		m.computeLocked(context.Background())
	}
	return m.serving[node]
}

// Nodes returns the nodes agents serve now, sorted.
func (m *Modes) Nodes() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.serving))
}

// Kick asks for a look at the agent pods now (a pod changed).
func (m *Modes) Kick() {
	select {
	case m.kicks() <- struct{}{}:
	default:
	}
}

// computeLocked looks at the agent pods and returns the nodes that turned.
// A failed listing changes nothing.
func (m *Modes) computeLocked(ctx context.Context) map[string]bool {
	pods := &corev1.PodList{}
	if err := m.Pods.List(ctx, pods, client.InNamespace(m.Namespace)); err != nil {
		return nil
	}
	m.computed = true
	if m.lastSeen == nil {
		m.lastSeen = map[string]time.Time{}
	}
	now := m.now()
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Spec.ServiceAccountName == m.ServiceAccount && p.Spec.NodeName != "" && !podDone(p) {
			m.lastSeen[p.Spec.NodeName] = now
		}
	}
	grace := m.HandBackAfter
	if grace <= 0 {
		grace = DefaultHandBackAfter
	}
	serving := map[string]bool{}
	for node, at := range m.lastSeen {
		if now.Sub(at) < grace {
			serving[node] = true
		} else {
			delete(m.lastSeen, node)
		}
	}
	changes := map[string]bool{}
	for node := range serving {
		if !m.serving[node] {
			changes[node] = true
		}
	}
	for node := range m.serving {
		if !serving[node] {
			changes[node] = false
		}
	}
	m.serving = serving
	return changes
}

// Start looks at the agent pods every second and on Kick until ctx ends,
// telling OnChange which nodes turned. The first look sets where each node
// is without a change: at start nothing was read yet.
func (m *Modes) Start(ctx context.Context) error {
	m.mu.Lock()
	if !m.computed {
		m.computeLocked(ctx)
	}
	m.mu.Unlock()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-m.kicks():
		}
		m.mu.Lock()
		changes := m.computeLocked(ctx)
		m.mu.Unlock()
		if m.OnChange == nil {
			continue
		}
		for _, node := range slices.Sorted(maps.Keys(changes)) {
			m.OnChange(ctx, node, changes[node])
		}
	}
}

// NeedLeaderElection makes only the leader, which runs the engine it
// steers, look.
func (m *Modes) NeedLeaderElection() bool { return true }
