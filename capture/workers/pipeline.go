package workers

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/semaphore"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/crifile"
)

const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
	// resyncPeriod is a safety net; pod events normally trigger resyncs.
	resyncPeriod = 30 * time.Second
	// recordBuffer bounds the records between the streams and the sinks.
	recordBuffer = 512
	// handoffBytes bounds the bytes of records read but not yet handed to
	// the sinks (whose queues count against the memory budget), so that a
	// pipeline whose sinks block holds at most this much more.
	handoffBytes = 256 << 10
	// handoffRecordCost is what a record costs beyond its line.
	handoffRecordCost = 256
)

// handoffWeight is what a record takes of the pipeline's hand-off bound; one
// line larger than the whole bound takes all of it.
func handoffWeight(r *tracked) int64 {
	return min(int64(len(r.Line))+handoffRecordCost, handoffBytes)
}

// containerKey identifies one container of one pod instance.
type containerKey struct {
	uid  types.UID
	name string
}

func (k containerKey) String() string { return string(k.uid) + "/" + k.name }

// container is the loop's bookkeeping for one selected container. Only the
// pipeline loop touches it; a running slice works on a copy of what it needs.
type container struct {
	key       containerKey
	namespace string
	pod       string
	name      string
	node      string
	labels    map[string]string
	pos       Position
	// dupUntil is set for a container resumed from stored positions: lines
	// up to it were handed to the sinks before, so they may be duplicates.
	dupUntil  Position
	backoff   time.Duration
	notBefore time.Time
	queuedAt  time.Time
	selected  bool
	running   bool
	// file is set for a container read from the kubelet's files; known
	// are its files as last listed, so that a file the kubelet deleted
	// before it was read is counted.
	file   bool
	known  []crifile.Known
	cancel context.CancelFunc
}

// outcome is how a stream slice ended.
type outcome int

const (
	outcomeRotated  outcome = iota // the rotation interval passed
	outcomeEnded                   // the server ended the stream (EOF)
	outcomeNotFound                // the pod or container is gone
	outcomeFailed                  // an error opening or reading
	outcomeStopped                 // the pipeline or the container's selection ended
	outcomeReplaced                // the log was replaced; resume the new one from its start
)

type sliceResult struct {
	key      containerKey
	pos      Position
	dupUntil Position
	outcome  outcome
	lines    int64
	err      error
	// replacedAt is the first timestamp of a log found in place of the
	// counted one (outcomeReplaced), and gap is set when the counted
	// lines were found in no log the kubelet still has.
	replacedAt time.Time
	gap        bool
	gapFrom    time.Time
	// gapBytes is how much was lost, where it is known.
	gapBytes int64
	// urgent is set when the slice ended inside a file the kubelet renamed:
	// it goes first, before the kubelet deletes the file.
	urgent bool
	known  []crifile.Known
}

// pipelineStats are the pipeline's counters, the one source of its numbers:
// Snapshot and the Prometheus collector read them. They outlive the
// pipeline's workers across configuration changes, so counters only grow
// until the pipeline is removed.
type pipelineStats struct {
	selected, active, waiting     atomic.Int64
	longestWaitNanos              atomic.Int64
	rotations, reconnects, errors atomic.Int64
	lines, bytes, openStreams     atomic.Int64
	resumeDuplicates, gaps        atomic.Int64
	gapNanos                      atomic.Int64
	positionWrites                atomic.Int64
	positionStages                atomic.Int64
	positionErrors                atomic.Int64
	positionBytes                 atomic.Int64
	truncatedLines                atomic.Int64
	malformedLines, gapBytes      atomic.Int64
	fileContainers                atomic.Int64
	unreadBytes                   atomic.Int64
	// namespaceLimited counts the waiting containers that had a slot of
	// the pipeline's pool but not of its namespace's stream limit.
	namespaceLimited atomic.Int64
	// opens and openWaitNanos count the streams that waited for their turn
	// to open, and how long they waited in all.
	opens, openWaitNanos atomic.Int64
	lastGap              atomic.Pointer[capture.Gap]
}

// deps are what a pipeline uses from its surroundings, handed to it by the
// manager.
type deps struct {
	source       capture.LogSource
	files        *FileSource
	opens        *fairLimiter
	writes       *fairLimiter
	streams      *namespaceSlots
	pods         client.Reader
	store        capture.PositionStore
	drainTimeout time.Duration
	samplePeriod time.Duration
	// elsewhere tells the nodes whose pods another reader serves (their
	// agent); nil for none.
	elsewhere func(node string) bool
	log       logr.Logger
}

// pipeline runs the capture workers of one LogPipeline: a loop that selects
// containers and schedules stream slices on a bounded pool, one goroutine
// per open stream, and a fan-out goroutine that hands records to the sinks.
type pipeline struct {
	key      string
	cfg      capture.PipelineConfig
	selector labels.Selector
	deps     deps
	sinks    []capture.Sink
	tracker  *tracker
	log      logr.Logger

	g           *group
	records     chan *tracked
	handoff     *semaphore.Weighted
	results     chan sliceResult
	podsChanged chan struct{}
	// slotFreed is signalled when a stream of the namespace ends while
	// this pipeline waits for the namespace's stream limit.
	slotFreed  chan struct{}
	sinkCtx    context.Context
	sinkCancel context.CancelFunc
	fanoutDone chan struct{}
	startOnce  sync.Once
	started    atomic.Bool

	// owned by the loop goroutine
	containers map[containerKey]*container
	ready      []*container
	active     int
	synced     bool
	finished   map[containerKey]bool

	stats   *pipelineStats
	sampler *sampler

	// nodes counts the containers by node, for Manager.Handed.
	nodesMu sync.Mutex
	nodes   map[string]int
}

func newPipeline(d deps, cfg capture.PipelineConfig, sinks []capture.Sink, tr *tracker, stats *pipelineStats) (*pipeline, error) {
	sel := labels.Everything()
	if cfg.Selector != nil {
		s, err := metav1.LabelSelectorAsSelector(cfg.Selector)
		if err != nil {
			return nil, err //nolint:wrapcheck // the caller adds the pipeline
		}
		sel = s
	}
	key := cfg.Namespace + "/" + cfg.Name
	p := &pipeline{
		key:         key,
		cfg:         cfg,
		selector:    sel,
		deps:        d,
		sinks:       sinks,
		tracker:     tr,
		log:         d.log.WithValues("pipeline", key),
		records:     make(chan *tracked, recordBuffer),
		handoff:     semaphore.NewWeighted(handoffBytes),
		results:     make(chan sliceResult, max(cfg.MaxStreams, 1)),
		podsChanged: make(chan struct{}, 1),
		slotFreed:   make(chan struct{}, 1),
		fanoutDone:  make(chan struct{}),
		containers:  map[containerKey]*container{},
		finished:    map[containerKey]bool{},
		stats:       stats,
		sampler:     &sampler{span: durationOr(cfg.HealthWindow, 10*time.Minute)},
	}
	if stager, ok := d.store.(capture.PositionStager); ok {
		tr.setStage(func() { p.stagePositions(stager) })
	} else {
		tr.setStage(nil)
	}
	return p, nil
}

// start runs the pipeline's goroutines in a child group of parent.
func (p *pipeline) start(parent *group) {
	p.startOnce.Do(func() {
		p.g = parent.child()
		// The sinks outlive the readers for the drain, so their context
		// ends only in stop; it carries the group, which owns whatever
		// goroutines a sink starts with capture.Go.
		p.sinkCtx, p.sinkCancel = context.WithCancel(capture.WithOwner(context.WithoutCancel(p.g.ctx), p.g))
		p.started.Store(true)
		for _, s := range p.sinks {
			p.g.Go(func(context.Context) { s.Run(p.sinkCtx) })
		}
		p.g.Go(p.fanout)
		p.g.Go(p.loop)
		p.g.Go(p.sample)
		p.g.Go(p.writePositions)
	})
}

// stop ends the streams, lets the sinks take what was read within
// drainTimeout, closes the sinks and waits for every goroutine.
func (p *pipeline) stop(drainTimeout time.Duration) {
	if !p.started.Load() {
		p.startOnce.Do(func() {}) // never start later
		closeSinks(p.sinks, drainTimeout)
		return
	}
	p.g.cancel()
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	select {
	case <-p.fanoutDone:
	case <-t.C:
	}
	// The fan-out has closed the sinks, each within drainTimeout; a sender
	// still retrying a dead destination gives up now.
	p.sinkCancel()
	p.g.Wait()
}

func closeSinks(sinks []capture.Sink, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, s := range sinks {
		_ = s.Close(ctx)
	}
}

// handedOff gives back what r took of the hand-off bound once the sinks
// have it.
func (p *pipeline) handedOff(r *tracked) { p.handoff.Release(handoffWeight(r)) }

// notify asks the loop to resync its containers; it never blocks.
func (p *pipeline) notify() {
	select {
	case p.podsChanged <- struct{}{}:
	default:
	}
}

// fanout hands every record to every sink, in order, until the loop closes
// the record channel; then it closes the sinks.
func (p *pipeline) fanout(context.Context) {
	defer close(p.fanoutDone)
	for r := range p.records {
		p.tracker.track(r, len(p.sinks))
		for _, s := range p.sinks {
			if err := s.Write(p.sinkCtx, &r.Record); err != nil && p.sinkCtx.Err() == nil {
				p.log.Error(err, "sink write failed")
			}
		}
		p.handedOff(r)
	}
	ctx, cancel := context.WithTimeout(p.sinkCtx, p.deps.drainTimeout)
	defer cancel()
	for _, s := range p.sinks {
		if err := s.Close(ctx); err != nil {
			p.log.Error(err, "closing sink")
		}
	}
}

// loop owns the container set and the pool. It is the only goroutine that
// starts stream slices, so at most MaxStreams are open at any instant.
func (p *pipeline) loop(ctx context.Context) {
	defer p.shutdown()
	resync := time.NewTicker(resyncPeriod)
	defer resync.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	p.loadPositions(ctx)
	for _, cp := range p.cfg.Resume {
		p.tracker.offer(cp)
	}
	p.resync(ctx)
	for {
		wait := p.schedule(ctx)
		p.publish()
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case r := <-p.results:
			p.handle(ctx, r)
		case <-p.podsChanged:
			p.resync(ctx)
		case <-p.slotFreed:
		case <-resync.C:
			p.resync(ctx)
		case <-timer.C:
		}
	}
}

// shutdown waits for the running slices, then closes the record channel so
// that the fan-out drains it.
func (p *pipeline) shutdown() {
	for _, c := range p.containers {
		if c.cancel != nil {
			c.cancel()
		}
	}
	p.deps.streams.unregister(p.cfg.Namespace, p.slotFreed)
	for p.active > 0 {
		r := <-p.results
		p.active--
		p.deps.streams.release(p.cfg.Namespace)
		if c := p.containers[r.key]; c != nil {
			c.pos, c.dupUntil = r.pos, r.dupUntil
		}
	}
	close(p.records)
	p.publish()
}

// schedule starts slices for ready containers while slots are free, in FIFO
// order, and returns how long until the next delayed container is due.
func (p *pipeline) schedule(ctx context.Context) time.Duration {
	now := time.Now()
	wait := time.Hour
	kept := p.ready[:0]
	var (
		waiting, nsLimited int64
		longest            time.Duration
		nsFull             bool
	)
	for _, c := range p.ready {
		switch {
		case c.notBefore.After(now):
			wait = min(wait, c.notBefore.Sub(now))
			kept = append(kept, c)
		case p.active < p.cfg.MaxStreams && !nsFull && p.deps.streams.tryAcquire(p.cfg.Namespace, p.slotFreed):
			p.startSlice(ctx, c)
		default:
			if p.active < p.cfg.MaxStreams {
				nsFull = true
				nsLimited++
			}
			waiting++
			longest = max(longest, now.Sub(c.queuedAt))
			kept = append(kept, c)
		}
	}
	clear(p.ready[len(kept):])
	p.ready = kept
	p.stats.waiting.Store(waiting)
	p.stats.namespaceLimited.Store(nsLimited)
	p.stats.longestWaitNanos.Store(int64(longest))
	return wait
}

func (p *pipeline) startSlice(ctx context.Context, c *container) {
	sctx, cancel := context.WithCancel(ctx)
	c.running, c.cancel = true, cancel
	p.active++
	in := *c // the slice works on a copy
	p.g.Go(func(context.Context) {
		r := p.runSlice(sctx, &in)
		cancel()
		p.results <- r
	})
}

// handle takes a finished slice back and decides what comes next for its container.
func (p *pipeline) handle(ctx context.Context, r sliceResult) {
	p.active--
	p.deps.streams.release(p.cfg.Namespace)
	c := p.containers[r.key]
	if c == nil {
		return
	}
	c.running, c.cancel = false, nil
	c.pos, c.dupUntil = r.pos, r.dupUntil
	if r.known != nil {
		c.known = r.known
	}
	if r.gap {
		p.recordGap(c, r)
	}
	if !c.selected {
		p.drop(c, false)
		return
	}
	switch r.outcome {
	case outcomeRotated:
		p.stats.rotations.Add(1)
		p.enqueue(c, p.backoffFor(c, true))
		if r.urgent {
			p.toFront(c)
		}
	case outcomeEnded:
		p.countReconnect()
		if p.containerFinished(ctx, c) {
			p.drop(c, true)
			return
		}
		p.enqueue(c, p.backoffFor(c, r.lines > 0))
	case outcomeNotFound:
		if !p.containerExists(ctx, c) {
			p.drop(c, false)
			return
		}
		p.countError()
		p.enqueue(c, p.backoffFor(c, false))
	case outcomeFailed:
		p.countError()
		p.log.V(1).Info("log stream failed", "pod", c.pod, "container", c.name, "error", r.err)
		p.enqueue(c, p.backoffFor(c, false))
	case outcomeReplaced:
		p.countReconnect()
		p.enqueue(c, p.backoffFor(c, true))
	case outcomeStopped:
		if ctx.Err() == nil {
			p.enqueue(c, time.Time{})
		}
	}
}

func (p *pipeline) countError() {
	p.stats.errors.Add(1)
	p.countReconnect()
}

func (p *pipeline) countReconnect() {
	p.stats.reconnects.Add(1)
}

// backoffFor returns when a container may reopen: right away after progress,
// else after an exponential backoff with jitter.
func (p *pipeline) backoffFor(c *container, progress bool) time.Time {
	if progress {
		c.backoff = 0
		return time.Time{}
	}
	if c.backoff == 0 {
		c.backoff = minBackoff
	} else {
		c.backoff = min(2*c.backoff, maxBackoff)
	}
	jitter := time.Duration(rand.Int64N(int64(c.backoff)/5 + 1))
	return time.Now().Add(c.backoff - c.backoff/10 + jitter)
}

func (p *pipeline) enqueue(c *container, notBefore time.Time) {
	c.notBefore = notBefore
	c.queuedAt = time.Now()
	if notBefore.After(c.queuedAt) {
		c.queuedAt = notBefore
	}
	p.ready = append(p.ready, c)
}

// toFront moves the container just enqueued before every other waiting one.
func (p *pipeline) toFront(c *container) {
	if n := len(p.ready); n > 1 && p.ready[n-1] == c {
		copy(p.ready[1:], p.ready[:n-1])
		p.ready[0] = c
	}
}

// drop forgets a container; finished ones are remembered so that a resync
// does not select them again while their pod exists.
func (p *pipeline) drop(c *container, finished bool) {
	delete(p.containers, c.key)
	for i, r := range p.ready {
		if r == c {
			p.ready = append(p.ready[:i], p.ready[i+1:]...)
			break
		}
	}
	if finished {
		p.finished[c.key] = true
	}
	// The count is a fact at once, not at the next resync (up to 30s later).
	p.countSelected()
}

// recordGap counts a stretch of log that was gone when the container's
// capture resumed.
func (p *pipeline) recordGap(c *container, r sliceResult) {
	g := &capture.Gap{Container: c.namespace + "/" + c.pod + "/" + c.name, From: r.gapFrom, To: r.replacedAt, Bytes: r.gapBytes}
	p.stats.gaps.Add(1)
	p.stats.gapBytes.Add(r.gapBytes)
	if !g.From.IsZero() && g.To.After(g.From) {
		p.stats.gapNanos.Add(int64(g.To.Sub(g.From)))
	}
	p.stats.lastGap.Store(g)
	p.log.Info("log lines were gone when capture resumed; they are lost", "container", g.Container,
		"after", g.From, "before", g.To, "bytes", g.Bytes)
}

// publish makes the loop's pool numbers visible to Snapshot and the metrics.
func (p *pipeline) publish() {
	p.stats.active.Store(int64(p.active))
}

// counts reports the pipeline's numbers.
func (p *pipeline) counts() capture.Snapshot {
	s := capture.Snapshot{
		Running:            p.started.Load(),
		SelectedContainers: int(p.stats.selected.Load()),
		ActiveStreams:      int(p.stats.active.Load()),
		WaitingStreams:     int(p.stats.waiting.Load()),
		Rotations:          p.stats.rotations.Load(),
		Reconnects:         p.stats.reconnects.Load(),
		StreamErrors:       p.stats.errors.Load(),
		OpenStreams:        int(p.stats.openStreams.Load()),
		LongestWait:        time.Duration(p.stats.longestWaitNanos.Load()),
		LinesTotal:         p.stats.lines.Load(),
		BytesTotal:         p.stats.bytes.Load(),
		ResumeDuplicates:   p.stats.resumeDuplicates.Load(),
		Gaps:               p.stats.gaps.Load(),
		LastGap:            p.stats.lastGap.Load(),
		GapBytes:           p.stats.gapBytes.Load(),
		TruncatedLines:     p.stats.truncatedLines.Load(),
		MalformedLines:     p.stats.malformedLines.Load(),
		FileContainers:     int(p.stats.fileContainers.Load()),
		UnreadBytes:        p.stats.unreadBytes.Load(),
		Opens:              p.stats.opens.Load(),
		OpenWait:           time.Duration(p.stats.openWaitNanos.Load()),
		OpenRateLimit:      p.deps.opens.perSecond(),
		Goroutines:         p.goroutines(),
		NamespaceLimited:   int(p.stats.namespaceLimited.Load()),
	}
	s.NamespaceStreams, s.NamespaceStreamLimit = p.deps.streams.inUse(p.cfg.Namespace)
	for _, sk := range p.sinks {
		if r, ok := sk.(capture.StatsReporter); ok {
			s.Sinks = append(s.Sinks, r.Stats())
		}
	}
	return s
}

// goroutines is how many goroutines the pipeline's workers own now.
func (p *pipeline) goroutines() int {
	if !p.started.Load() {
		return 0
	}
	return p.g.Count()
}

// durationOr returns d, or def when d is not positive.
func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
