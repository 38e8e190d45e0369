// Package workers is the capture engine: it runs the workers of log
// pipelines. A pipeline's loop selects containers from the pod cache and
// runs stream slices on a bounded pool, each slice reading one container's
// log from a capture.LogSource for one rotation interval; a fan-out hands
// every record to the pipeline's sinks; positions advance over what every
// sink acknowledged and are kept in a capture.PositionStore; a sampler
// records the workers' own counts for health.
//
// It knows nothing of CRDs or conditions: the controllers hand the Manager
// a resolved capture.PipelineConfig and read back a capture.Snapshot. Only
// the wiring (and tests) import this package.
package workers

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
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/crifile"
)

// PodCache is the shared informer cache the workers select pods from.
type PodCache interface {
	client.Reader
	GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error)
}

// Options are what the Manager needs from its surroundings.
type Options struct {
	// Source opens the containers' logs through the API; nil reads only
	// the pods of Files' node.
	Source capture.LogSource
	// Files, when set, reads the containers of the pods on its node from
	// the kubelet's CRI files instead of through Source.
	Files *FileSource
	// Pods is the informer cache pods are selected from.
	Pods PodCache
	// Sinks builds the sinks of a pipeline.
	Sinks capture.SinkFactory
	// DrainTimeout bounds how long a stopping pipeline waits for its sinks.
	DrainTimeout time.Duration
	// Log is the workers' logger.
	Log logr.Logger
	// SamplePeriod is how often each pipeline's numbers are sampled for
	// health; 15s when zero.
	SamplePeriod time.Duration
	// Positions stores each pipeline's positions in the cluster; without it
	// positions live in memory only and do not survive a restart.
	Positions capture.PositionStore
	// LogOpenRate bounds how many log streams the whole process opens per
	// second, shared fairly between namespaces (LogOpenBurst at once); zero
	// is unlimited. Containers ÷ rotation interval must fit in it.
	LogOpenRate  float64
	LogOpenBurst int
	// PositionsWriteRate bounds how many positions objects the whole process
	// writes per second, shared fairly between namespaces; zero is unlimited.
	// Pipelines ÷ positions.writeInterval must fit in it, or writes are spaced.
	PositionsWriteRate float64
	// MaxStreamsPerNamespace bounds the log streams open at once over all
	// pipelines of one namespace; zero is unlimited.
	MaxStreamsPerNamespace int
	// ForgetPipeline, when set, is called when a pipeline is removed, so that
	// the sinks can forget what they keep per pipeline.
	ForgetPipeline func(pipeline string)
	// ReadElsewhere, when set, names the nodes whose pods another reader
	// serves (a node agent, in the operator's auto capture mode): their
	// containers are not read here, and a container whose node turns to it
	// is released (Handed tells when, and where it was delivered up to).
	// Call Resync when its answer changes.
	ReadElsewhere func(node string) bool
}

// positionForgetter is a PositionStore that keeps something per pipeline in
// memory, to be dropped when the pipeline's workers are removed.
type positionForgetter interface {
	Forget(ref capture.PipelineRef)
}

// Manager owns the capture workers of every pipeline. It is a
// controller-runtime Runnable that needs leader election, so only the leader
// runs workers, and the Prometheus collector of the workers' metrics. Apply
// may be called before Start; pipelines applied then start with it.
type Manager struct {
	opts Options
	deps deps

	mu   sync.Mutex
	root *group
	// pipelines are the running configurations; kept is what outlives a
	// pipeline's workers across configuration changes (positions, counters)
	// until the pipeline is removed.
	pipelines map[types.NamespacedName]*pipelineEntry
	kept      map[types.NamespacedName]*keptState
	// retiring holds, per key, a channel closed when the key's stopping
	// workers have all stopped.
	retiring map[types.NamespacedName]chan struct{}
	// retirers owns the goroutines that stop retired workers; each is
	// bounded by DrainTimeout, so it is waited for, never cancelled.
	retirers *group
}

type pipelineEntry struct {
	hash string
	p    *pipeline
	// after is closed when the pipeline's previous workers have stopped and
	// written their last positions; this entry's workers start only then,
	// so that they resume exactly where the old ones stopped. Nil when there
	// were none.
	after <-chan struct{}
}

type keptState struct {
	tracker *tracker
	stats   *pipelineStats
}

// NewManager returns a Manager with no pipelines.
func NewManager(opts Options) (*Manager, error) {
	if (opts.Source == nil && opts.Files == nil) || opts.Pods == nil || opts.Sinks == nil {
		return nil, errors.New("the workers need a log source or files, a pod cache and a sink factory")
	}
	if opts.Files != nil {
		fs := *opts.Files
		if fs.Root == "" || fs.Node == "" {
			return nil, errors.New("reading the kubelet's files needs their root directory and the node's name")
		}
		if fs.Watcher == nil {
			fs.Watcher = &crifile.Watcher{}
		}
		opts.Files = &fs
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
		opts: opts,
		deps: deps{source: opts.Source, files: opts.Files, opens: newFairLimiter(opts.LogOpenRate, opts.LogOpenBurst),
			writes:  newFairLimiter(opts.PositionsWriteRate, int(opts.PositionsWriteRate)),
			streams: newNamespaceSlots(opts.MaxStreamsPerNamespace),
			pods:    opts.Pods, store: opts.Positions, drainTimeout: opts.DrainTimeout,
			samplePeriod: opts.SamplePeriod, log: opts.Log, elsewhere: opts.ReadElsewhere},
		pipelines: map[types.NamespacedName]*pipelineEntry{},
		kept:      map[types.NamespacedName]*keptState{},
		retiring:  map[types.NamespacedName]chan struct{}{},
		retirers:  newGroup(context.Background()),
	}, nil
}

// Apply (re)configures the workers of a pipeline. It is idempotent: a config
// whose hash already runs changes nothing. A new config replaces the
// workers; containers resume where the old ones stopped. Apply never waits
// for the network: the old workers drain their sinks in the background (up
// to DrainTimeout) and the new ones start when they have stopped; until
// then the Snapshot says HandingOver.
func (m *Manager) Apply(_ context.Context, key types.NamespacedName, cfg capture.PipelineConfig) error {
	hash, err := cfg.Hash()
	if err != nil {
		return fmt.Errorf("applying pipeline %s: %w", key, err)
	}
	if cfg.MaxStreams < 1 || cfg.RotationInterval <= 0 {
		return fmt.Errorf("applying pipeline %s: maxStreams and rotation interval must be positive", key)
	}
	m.mu.Lock()
	old := m.pipelines[key]
	m.mu.Unlock()
	if old != nil && old.hash == hash {
		return nil
	}
	m.deps.streams.setLimit(cfg.Namespace, cfg.NamespaceMaxStreams)
	sinks, err := m.buildSinks(key.String(), cfg.Sinks)
	if err != nil {
		return fmt.Errorf("applying pipeline %s: %w", key, err)
	}
	m.mu.Lock()
	k := m.kept[key]
	if k == nil {
		k = &keptState{tracker: newTracker(), stats: &pipelineStats{}}
		m.kept[key] = k
	}
	m.mu.Unlock()
	p, err := newPipeline(m.deps, cfg, sinks, k.tracker, k.stats)
	if err != nil {
		closeSinks(sinks, m.opts.DrainTimeout)
		return fmt.Errorf("applying pipeline %s: %w", key, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := &pipelineEntry{hash: hash, p: p}
	if cur := m.pipelines[key]; cur != nil {
		m.retireLocked(key, cur, false)
	}
	e.after = m.retiring[key] // nil when nothing of the key is stopping
	m.pipelines[key] = e
	if m.root != nil {
		m.launchLocked(key, e)
	}
	return nil
}

// retireLocked stops an entry that is no longer wanted, in the background
// once the Manager runs; forget also drops what is kept of the pipeline once
// the workers stopped. The key's retiring channel is closed when the last of
// its retiring generations has stopped.
func (m *Manager) retireLocked(key types.NamespacedName, e *pipelineEntry, forget bool) {
	prev := m.retiring[key]
	done := make(chan struct{})
	m.retiring[key] = done
	stop := func(context.Context) {
		if prev != nil {
			<-prev // generations stop in order; each is bounded by DrainTimeout
		}
		e.p.stop(m.opts.DrainTimeout)
		if forget {
			m.forget(key)
		}
		m.mu.Lock()
		if m.retiring[key] == done {
			delete(m.retiring, key)
		}
		m.mu.Unlock()
		close(done)
	}
	m.retirers.Go(stop)
}

// launchLocked starts an entry's workers, at once or when the previous
// generation has stopped.
func (m *Manager) launchLocked(key types.NamespacedName, e *pipelineEntry) {
	if e.after == nil {
		e.p.start(m.root)
		return
	}
	m.root.Go(func(ctx context.Context) {
		select {
		case <-e.after:
		case <-ctx.Done():
			return
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.pipelines[key] == e && m.root.ctx.Err() == nil {
			e.after = nil
			e.p.start(m.root)
		}
	})
}

func (m *Manager) buildSinks(pipeline string, cfgs []capture.SinkConfig) ([]capture.Sink, error) {
	sinks := make([]capture.Sink, 0, len(cfgs))
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

// Remove stops the workers of a pipeline and forgets it, its positions and
// counters included, once they stopped. It does not wait: the workers drain
// in the background. Removing an unknown pipeline is not an error.
func (m *Manager) Remove(_ context.Context, key types.NamespacedName) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.pipelines[key]
	if e == nil {
		return nil
	}
	delete(m.pipelines, key)
	m.retireLocked(key, e, true)
	return nil
}

// forget drops what is kept of a pipeline whose workers have stopped,
// unless it was applied again meanwhile.
func (m *Manager) forget(key types.NamespacedName) {
	m.mu.Lock()
	again := m.pipelines[key] != nil
	if !again {
		delete(m.kept, key)
	}
	m.mu.Unlock()
	if again {
		return
	}
	if f, ok := m.opts.Positions.(positionForgetter); ok {
		f.Forget(capture.PipelineRef{Namespace: key.Namespace, Name: key.Name})
	}
	if m.opts.ForgetPipeline != nil {
		m.opts.ForgetPipeline(key.String())
	}
}

// Delete stops a deleted pipeline's workers, as Remove does, and deletes its
// stored positions once they have made their last write. While they drain
// it returns capture.ErrWorkersStopping without waiting.
func (m *Manager) Delete(ctx context.Context, key types.NamespacedName) error {
	if err := m.Remove(ctx, key); err != nil {
		return err
	}
	m.mu.Lock()
	_, stopping := m.retiring[key]
	m.mu.Unlock()
	if stopping {
		return fmt.Errorf("pipeline %s: %w", key, capture.ErrWorkersStopping)
	}
	if m.opts.Positions == nil {
		return nil
	}
	if err := m.opts.Positions.Delete(ctx, capture.PipelineRef{Namespace: key.Namespace, Name: key.Name}); err != nil {
		return fmt.Errorf("deleting the positions of %s: %w", key, err)
	}
	return nil
}

// Snapshot reports the numbers of a pipeline's workers, and false when the
// pipeline is unknown.
func (m *Manager) Snapshot(key types.NamespacedName) (capture.Snapshot, bool) {
	m.mu.Lock()
	e := m.pipelines[key]
	handingOver := e != nil && e.after != nil
	m.mu.Unlock()
	if e == nil {
		return capture.Snapshot{}, false
	}
	s := e.p.counts()
	s.HandingOver = handingOver && !s.Running
	s.Window = e.p.sampler.window()
	s.Positions = e.p.tracker.status()
	s.ProcessGoroutines = goruntime.NumGoroutine()
	s.OpenFDs = OpenFDs()
	return s, true
}

// SinkStats aggregates the stats of a SinkTarget over every pipeline of its
// namespace that delivers to it; false when none does.
func (m *Manager) SinkStats(namespace, name string) (capture.SinkStats, bool) {
	m.mu.Lock()
	entries := make([]*pipelineEntry, 0, len(m.pipelines))
	for k, e := range m.pipelines {
		if k.Namespace == namespace {
			entries = append(entries, e)
		}
	}
	m.mu.Unlock()
	out := capture.SinkStats{Name: name}
	found := false
	for _, e := range entries {
		for _, sk := range e.p.sinks {
			r, ok := sk.(capture.StatsReporter)
			if !ok {
				continue
			}
			st := r.Stats()
			if st.Name != name {
				continue
			}
			found = true
			out = out.PlusSameBudget(st)
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
	m.root.Go(m.deps.opens.run)
	m.root.Go(m.deps.writes.run)
	if m.deps.files != nil {
		m.root.Go(m.deps.files.Watcher.Run)
	}
	for k, e := range m.pipelines {
		m.launchLocked(k, e)
	}
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
	m.retirers.Wait()
	m.root.Stop()
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

// Resync makes every pipeline compare its containers with the pods now, as a
// pod event does: after ReadElsewhere changed its answer.
func (m *Manager) Resync() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.pipelines {
		e.p.notify()
	}
}

// Offer hands the pipeline positions from the containers' previous reader
// (a node agent that went away): each container resumes from it unless its
// own is further. Offer before the Resync that selects the containers.
func (m *Manager) Offer(key types.NamespacedName, positions []capture.ContainerPosition) {
	if len(positions) == 0 {
		return
	}
	m.mu.Lock()
	k := m.kept[key]
	m.mu.Unlock()
	if k == nil {
		return // not applied here: nothing of it to resume
	}
	for _, cp := range positions {
		k.tracker.offer(cp)
	}
}

// Handed tells whether the pipeline's containers on node are released (no
// stream of theirs open or due, no line of theirs in flight to a sink) and
// returns where each was delivered up to, for the next reader, once its
// stored positions are loaded. A pipeline not applied here has nothing to
// release.
func (m *Manager) Handed(key types.NamespacedName, node string) ([]capture.ContainerPosition, bool) {
	m.mu.Lock()
	e, k, retiring := m.pipelines[key], m.kept[key], m.retiring[key] != nil
	m.mu.Unlock()
	if k == nil {
		return nil, true
	}
	if retiring || (e != nil && e.p.containersOn(node) > 0) {
		return nil, false
	}
	if e != nil && !k.tracker.isLoaded() {
		return nil, false // its stored positions are the ones to hand over
	}
	return k.tracker.handed(node)
}

// Positions returns where each container of the pipeline was delivered up
// to (after Start returned too: the final ones), for its node agent's
// reports.
func (m *Manager) Positions(key types.NamespacedName) []capture.ContainerPosition {
	m.mu.Lock()
	k := m.kept[key]
	m.mu.Unlock()
	if k == nil {
		return nil
	}
	out, _ := k.tracker.handed("")
	return out
}

// NeedLeaderElection makes only the elected leader run workers.
func (m *Manager) NeedLeaderElection() bool { return true }
