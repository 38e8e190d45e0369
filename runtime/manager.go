package runtime

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Snapshot is what the workers of one pipeline report about themselves.
type Snapshot struct {
	// ConfigHash identifies the configuration the workers run with.
	ConfigHash string
	// Running is true while the pipeline's workers run.
	Running bool
	// SelectedContainers, ActiveStreams and WaitingStreams describe the pool:
	// waiting containers are due for a stream but every slot is taken.
	SelectedContainers int
	ActiveStreams      int
	WaitingStreams     int
	// OpenStreams is how many response bodies are open now.
	OpenStreams int
	// Rotations counts streams closed and reopened on the rotation interval.
	Rotations int64
	// Reconnects counts streams reopened after EOF or an error.
	Reconnects int64
	// StreamErrors counts errors opening or reading streams.
	StreamErrors int64
	// Goroutines counts the goroutines the pipeline's workers own.
	Goroutines int
	// ProcessGoroutines and OpenFDs are the whole process's.
	ProcessGoroutines int
	OpenFDs           int
	// LinesTotal and BytesTotal count what the workers read.
	LinesTotal int64
	BytesTotal int64
	// LastDelivery is when the sinks last took a record.
	LastDelivery time.Time
	// Sinks are the pipeline's sinks' numbers, in spec order.
	Sinks []SinkStats
	// LongestWait is how long the longest-waiting container has been due
	// for a stream without a free slot.
	LongestWait time.Duration
	// Health is what the sampler measured over the health window.
	Health Health
	// Positions tells how the pipeline's positions are stored.
	Positions PositionsStatus
	// ResumeDuplicates counts lines sent again after a resume that the
	// previous workers had handed to the sinks before their positions were
	// last stored.
	ResumeDuplicates int64
	// Gaps counts stretches of log the kubelet no longer had when a
	// container's capture resumed; LastGap is the latest.
	Gaps    int64
	LastGap *Gap
}

// PodCache is the shared informer cache the workers select pods from.
type PodCache interface {
	client.Reader
	GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error)
}

// Options are what the Manager needs from its surroundings.
type Options struct {
	// Clientset opens the pods/log streams.
	Clientset kubernetes.Interface
	// Pods is the informer cache pods are selected from.
	Pods PodCache
	// Sinks builds the sinks of a pipeline.
	Sinks SinkFactory
	// Metrics receives the workers' numbers.
	Metrics *Metrics
	// DrainTimeout bounds how long a stopping pipeline waits for its sinks.
	DrainTimeout time.Duration
	// Log is the workers' logger.
	Log logr.Logger
	// SamplePeriod is how often each pipeline's numbers are sampled for
	// health; 15s when zero.
	SamplePeriod time.Duration
	// Positions stores each pipeline's positions in the cluster; without it
	// positions live in memory only and do not survive a restart.
	Positions PositionStore
	// ForgetPipeline, when set, is called when a pipeline is removed, so that
	// the sinks can delete its metric series.
	ForgetPipeline func(pipeline string)
}

// Manager owns the capture workers of every pipeline. It is a
// controller-runtime Runnable that needs leader election, so only the leader
// runs workers. Apply may be called before Start; pipelines applied then start
// with it.
type Manager struct {
	opts    Options
	metrics *Metrics
	log     logr.Logger
	// positions outlive a pipeline's workers across configuration changes.
	positions map[types.NamespacedName]*positions

	mu        sync.Mutex
	root      *group
	pipelines map[types.NamespacedName]*pipelineEntry
}

type pipelineEntry struct {
	hash string
	p    *pipeline
}

// NewManager returns a Manager with no pipelines.
func NewManager(opts Options) (*Manager, error) {
	if opts.Clientset == nil || opts.Pods == nil || opts.Sinks == nil || opts.Metrics == nil {
		return nil, errors.New("runtime manager needs a clientset, a pod cache, a sink factory and metrics")
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 10 * time.Second
	}
	if opts.SamplePeriod <= 0 {
		opts.SamplePeriod = 15 * time.Second
	}
	if opts.Log.GetSink() == nil {
		opts.Log = logr.Discard()
	}
	return &Manager{
		opts:      opts,
		metrics:   opts.Metrics,
		log:       opts.Log,
		positions: map[types.NamespacedName]*positions{},
		pipelines: map[types.NamespacedName]*pipelineEntry{},
	}, nil
}

// Apply (re)configures the workers of a pipeline. It is idempotent: a config
// whose hash already runs changes nothing and reports false. A new config
// replaces the workers; containers resume where the old ones stopped.
func (m *Manager) Apply(_ context.Context, key types.NamespacedName, cfg PipelineConfig) (bool, error) {
	hash, err := cfg.Hash()
	if err != nil {
		return false, fmt.Errorf("applying pipeline %s: %w", key, err)
	}
	if cfg.MaxStreams < 1 || cfg.RotationInterval <= 0 {
		return false, fmt.Errorf("applying pipeline %s: maxStreams and rotation interval must be positive", key)
	}
	m.mu.Lock()
	old := m.pipelines[key]
	m.mu.Unlock()
	if old != nil && old.hash == hash {
		return false, nil
	}
	sinks, err := m.buildSinks(key.String(), cfg.Sinks)
	if err != nil {
		return false, fmt.Errorf("applying pipeline %s: %w", key, err)
	}
	if old != nil {
		old.p.stop(m.opts.DrainTimeout)
	}
	m.mu.Lock()
	ps := m.positions[key]
	if ps == nil {
		ps = newPositions()
		m.positions[key] = ps
	}
	m.mu.Unlock()
	p, err := newPipeline(m, cfg, sinks, ps)
	if err != nil {
		closeSinks(sinks, m.opts.DrainTimeout)
		return false, fmt.Errorf("applying pipeline %s: %w", key, err)
	}
	m.mu.Lock()
	m.pipelines[key] = &pipelineEntry{hash: hash, p: p}
	if m.root != nil {
		p.start(m.root)
	}
	m.mu.Unlock()
	return true, nil
}

func (m *Manager) buildSinks(pipeline string, cfgs []SinkConfig) ([]Sink, error) {
	sinks := make([]Sink, 0, len(cfgs))
	for _, c := range cfgs {
		s, err := m.opts.Sinks(pipeline, c)
		if err != nil {
			closeSinks(sinks, m.opts.DrainTimeout)
			return nil, fmt.Errorf("building sink %s: %w", c.Name, err)
		}
		sinks = append(sinks, s)
	}
	return sinks, nil
}

// Remove stops the workers of a pipeline and forgets it, its positions
// included. Removing an unknown pipeline is not an error.
func (m *Manager) Remove(_ context.Context, key types.NamespacedName) error {
	m.mu.Lock()
	e := m.pipelines[key]
	delete(m.pipelines, key)
	m.mu.Unlock()
	if e != nil {
		e.p.stop(m.opts.DrainTimeout)
	}
	m.mu.Lock()
	delete(m.positions, key)
	m.mu.Unlock()
	if f, ok := m.opts.Positions.(positionForgetter); ok {
		f.Forget(PipelineRef{Namespace: key.Namespace, Name: key.Name})
	}
	m.metrics.forget(key.String())
	if m.opts.ForgetPipeline != nil {
		m.opts.ForgetPipeline(key.String())
	}
	return nil
}

// Snapshot reports the numbers of a pipeline's workers, and false when the
// pipeline is unknown.
func (m *Manager) Snapshot(key types.NamespacedName) (Snapshot, bool) {
	m.mu.Lock()
	e := m.pipelines[key]
	m.mu.Unlock()
	if e == nil {
		return Snapshot{}, false
	}
	s := e.p.snapshot()
	s.ConfigHash = e.hash
	s.Health = e.p.health.health()
	s.Positions = e.p.positions.status()
	s.ProcessGoroutines = goruntime.NumGoroutine()
	s.OpenFDs = OpenFDs()
	return s, true
}

// SinkStats aggregates the stats of a SinkTarget over every pipeline of its
// namespace that delivers to it; false when none does.
func (m *Manager) SinkStats(namespace, name string) (SinkStats, bool) {
	m.mu.Lock()
	entries := make([]*pipelineEntry, 0, len(m.pipelines))
	for k, e := range m.pipelines {
		if k.Namespace == namespace {
			entries = append(entries, e)
		}
	}
	m.mu.Unlock()
	out := SinkStats{Name: name}
	found := false
	for _, e := range entries {
		for _, sk := range e.p.sinks {
			r, ok := sk.(StatsReporter)
			if !ok {
				continue
			}
			st := r.Stats()
			if st.Name != name {
				continue
			}
			found = true
			out.SentLines += st.SentLines
			out.SentBytes += st.SentBytes
			out.FailedBatches += st.FailedBatches
			out.Retries += st.Retries
			out.DroppedLines += st.DroppedLines
			out.QueueBytes += st.QueueBytes
			out.QueueMaxBytes += st.QueueMaxBytes
			if st.LastSuccess.After(out.LastSuccess) {
				out.LastSuccess = st.LastSuccess
			}
			if !st.FailingSince.IsZero() && (out.FailingSince.IsZero() || st.FailingSince.Before(out.FailingSince)) {
				out.FailingSince = st.FailingSince
				out.LastError = st.LastError
			}
		}
	}
	return out, found
}

// Start runs the workers until ctx ends, then stops every pipeline and waits
// for all their goroutines.
func (m *Manager) Start(ctx context.Context) error {
	inf, err := m.opts.Pods.GetInformer(ctx, &corev1.Pod{})
	if err != nil {
		return fmt.Errorf("getting the pod informer: %w", err)
	}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    m.podEvent,
		UpdateFunc: func(_, obj any) { m.podEvent(obj) },
		DeleteFunc: m.podEvent,
	})
	if err != nil {
		return fmt.Errorf("watching pods: %w", err)
	}
	defer func() { _ = inf.RemoveEventHandler(reg) }()

	m.mu.Lock()
	m.root = newGroup(ctx)
	for _, e := range m.pipelines {
		e.p.start(m.root)
	}
	m.metrics.componentHealth.WithLabelValues("workers").Set(1)
	m.mu.Unlock()

	<-ctx.Done()

	m.mu.Lock()
	entries := make([]*pipelineEntry, 0, len(m.pipelines))
	for _, e := range m.pipelines {
		entries = append(entries, e)
	}
	m.pipelines = map[types.NamespacedName]*pipelineEntry{}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range entries {
		wg.Go(func() { e.p.stop(m.opts.DrainTimeout) })
	}
	wg.Wait()
	m.root.Stop()
	m.metrics.componentHealth.WithLabelValues("workers").Set(0)
	return nil
}

// podEvent wakes the pipelines of the pod's namespace.
func (m *Manager) podEvent(obj any) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, e := range m.pipelines {
		if k.Namespace == pod.Namespace {
			e.p.notify()
		}
	}
}

// NeedLeaderElection makes only the elected leader run workers.
func (m *Manager) NeedLeaderElection() bool { return true }
