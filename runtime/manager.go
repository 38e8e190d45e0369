package runtime

import (
	"context"
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// Snapshot is what the workers of one pipeline report about themselves.
type Snapshot struct {
	// ConfigHash identifies the configuration the workers run with.
	ConfigHash string
	// Running is true once the runtime has started the pipeline's workers.
	Running bool
	// SelectedContainers, ActiveStreams and WaitingStreams describe the pool.
	SelectedContainers int
	ActiveStreams      int
	WaitingStreams     int
	// Rotations counts stream rotations since the workers started.
	Rotations int64
	// Goroutines counts the goroutines the pipeline's workers own.
	Goroutines int
	// OpenFDs is the process's open file descriptors.
	OpenFDs int
	// LinesTotal and BytesTotal count what the workers read.
	LinesTotal int64
	BytesTotal int64
}

// Manager owns the capture workers of every pipeline. It is a
// controller-runtime Runnable that needs leader election, so only the leader
// runs workers. Apply may be called before Start; pipelines applied then start
// with it.
type Manager struct {
	mu        sync.Mutex
	pipelines map[types.NamespacedName]*pipelineEntry
	started   bool
}

type pipelineEntry struct {
	hash string
	cfg  PipelineConfig
}

// NewManager returns a Manager with no pipelines.
func NewManager() *Manager {
	return &Manager{pipelines: map[types.NamespacedName]*pipelineEntry{}}
}

// Apply (re)configures the workers of a pipeline. It is idempotent: a config
// whose hash is already running changes nothing and reports false.
func (m *Manager) Apply(_ context.Context, key types.NamespacedName, cfg PipelineConfig) (bool, error) {
	hash, err := cfg.Hash()
	if err != nil {
		return false, fmt.Errorf("applying pipeline %s: %w", key, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.pipelines[key]; ok && e.hash == hash {
		return false, nil
	}
	m.pipelines[key] = &pipelineEntry{hash: hash, cfg: cfg}
	return true, nil
}

// Remove stops the workers of a pipeline and forgets it. Removing an unknown
// pipeline is not an error.
func (m *Manager) Remove(_ context.Context, key types.NamespacedName) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pipelines, key)
	return nil
}

// Snapshot reports the numbers of a pipeline's workers, and false when the
// pipeline is unknown.
func (m *Manager) Snapshot(key types.NamespacedName) (Snapshot, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.pipelines[key]
	if !ok {
		return Snapshot{}, false
	}
	return Snapshot{ConfigHash: e.hash, Running: m.started}, true
}

// Start runs until ctx ends, then stops every pipeline.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	m.started = true
	m.mu.Unlock()
	<-ctx.Done()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.started = false
	clear(m.pipelines)
	return nil
}

// NeedLeaderElection makes only the elected leader run workers.
func (m *Manager) NeedLeaderElection() bool { return true }
