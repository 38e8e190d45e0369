package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/capture"
)

// probeTimeout bounds one probe; probeWorkers is how many run at once.
const (
	probeTimeout = 5 * time.Second
	probeWorkers = 4
	probeQueue   = 1024 // finished probes waiting to wake their reconcile
)

// probeResult is the outcome of the last probe of one SinkTarget.
type probeResult struct {
	hash string // of the configuration probed
	err  error
	at   time.Time
}

type probeRequest struct {
	key  types.NamespacedName
	hash string
	cfg  capture.SinkConfig
}

// probes runs the SinkTargets' endpoint probes off the reconcile path: a
// reconcile reads the last result and asks for a new probe when it is
// missing, stale or of another configuration; a fixed pool of workers
// probes, each with probeTimeout, and wakes the SinkTarget's reconcile with
// the result. No reconcile ever waits on a probe, and a namespace has at
// most one probe running at a time, taken in turn with the others', so a
// tenant's blackholed endpoints delay only that tenant's probes.
type probes struct {
	prober Prober
	done   chan event.GenericEvent

	mu       sync.Mutex
	wake     *sync.Cond
	closed   bool
	results  map[types.NamespacedName]probeResult
	pending  map[types.NamespacedName]bool
	waiting  map[string][]probeRequest // by namespace
	order    []string                  // namespaces with waiting probes, in turn
	inflight map[string]bool
}

func newProbes(p Prober) *probes {
	ps := &probes{prober: p, done: make(chan event.GenericEvent, probeQueue),
		results: map[types.NamespacedName]probeResult{}, pending: map[types.NamespacedName]bool{},
		waiting: map[string][]probeRequest{}, inflight: map[string]bool{}}
	ps.wake = sync.NewCond(&ps.mu)
	return ps
}

// configHash identifies what a probe checked; credentials included, so a
// rotated token is probed again.
func configHash(cfg capture.SinkConfig) string {
	b, err := json.Marshal(cfg)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// result returns the last probe of key, and asks for a new one when there
// is none, it is older than maxAge or it probed another configuration. Until
// the new one lands the last result stands, so that a changed credential
// does not flip Ready to Unknown and back within milliseconds (a reconcile
// reading the cache before the flip arrived would then skip the write back,
// the object being "unchanged"). ok is false while no probe of key finished.
func (p *probes) result(key types.NamespacedName, cfg capture.SinkConfig, maxAge time.Duration, now time.Time) (ok bool, err error) {
	h := configHash(cfg)
	p.mu.Lock()
	r, have := p.results[key]
	ok = have
	if (!have || r.hash != h || now.Sub(r.at) >= maxAge) && !p.pending[key] {
		p.pending[key] = true
		if len(p.waiting[key.Namespace]) == 0 {
			p.order = append(p.order, key.Namespace)
		}
		p.waiting[key.Namespace] = append(p.waiting[key.Namespace], probeRequest{key: key, hash: h, cfg: cfg})
		p.wake.Signal()
	}
	p.mu.Unlock()
	return ok, r.err
}

// forget drops what is known of a deleted SinkTarget.
func (p *probes) forget(key types.NamespacedName) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.results, key)
}

// next waits for a probe of a namespace that has none running, taking the
// namespaces in turn; false once the probes are closed.
func (p *probes) next() (probeRequest, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if p.closed {
			return probeRequest{}, false
		}
		for i, ns := range p.order {
			if p.inflight[ns] {
				continue
			}
			q := p.waiting[ns]
			req := q[0]
			p.order = append(p.order[:i:i], p.order[i+1:]...)
			if len(q) > 1 {
				p.waiting[ns] = q[1:]
				p.order = append(p.order, ns)
			} else {
				delete(p.waiting, ns)
			}
			p.inflight[ns] = true
			return req, true
		}
		p.wake.Wait()
	}
}

// Start runs the probe workers until ctx ends; it is a controller-runtime
// Runnable, so the manager owns and waits for them.
func (p *probes) Start(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.wake.Broadcast()
	})
	defer stop()
	var wg sync.WaitGroup
	for range probeWorkers {
		wg.Go(func() {
			for {
				req, ok := p.next()
				if !ok {
					return
				}
				p.probe(ctx, req)
			}
		})
	}
	wg.Wait()
	return nil
}

func (p *probes) probe(ctx context.Context, req probeRequest) {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	err := p.prober.Probe(pctx, req.cfg)
	cancel()
	p.mu.Lock()
	p.results[req.key] = probeResult{hash: req.hash, err: err, at: time.Now()}
	delete(p.pending, req.key)
	delete(p.inflight, req.key.Namespace)
	p.mu.Unlock()
	p.wake.Broadcast()
	obj := &logsv1alpha1.SinkTarget{ObjectMeta: metav1.ObjectMeta{Namespace: req.key.Namespace, Name: req.key.Name}}
	select {
	case p.done <- event.GenericEvent{Object: obj}:
	case <-ctx.Done():
	}
}

// NeedLeaderElection runs the probes where the reconciles run: on the leader.
func (p *probes) NeedLeaderElection() bool { return true }
