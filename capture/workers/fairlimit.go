package workers

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// fairLimiter paces a kind of API request for the whole process and shares
// the pace fairly between namespaces: each grant goes to the next namespace
// with a waiting request, in turn, so a namespace with many containers or
// pipelines, or a short interval, waits for its own requests only. The
// engine has two: log stream opens (every open costs the API server and the
// kubelet a request; client-go's own limiter is off for log streams) and
// positions writes.
type fairLimiter struct {
	limiter *rate.Limiter // nil: unlimited

	mu     sync.Mutex
	queues map[string][]*ticket
	order  []string // namespaces with waiters, in turn
	wake   chan struct{}
}

type ticket struct {
	ready     chan struct{}
	cancelled bool
}

// newFairLimiter allows perSecond grants a second, bursts of burst; a rate
// of zero or less is unlimited.
func newFairLimiter(perSecond float64, burst int) *fairLimiter {
	l := &fairLimiter{queues: map[string][]*ticket{}, wake: make(chan struct{}, 1)}
	if perSecond > 0 {
		l.limiter = rate.NewLimiter(rate.Limit(perSecond), max(1, burst))
	}
	return l
}

// wait blocks until namespace gets its grant, or ctx ends.
func (l *fairLimiter) wait(ctx context.Context, namespace string) error {
	if l == nil || l.limiter == nil {
		return nil
	}
	t := &ticket{ready: make(chan struct{})}
	l.mu.Lock()
	if len(l.queues[namespace]) == 0 {
		l.order = append(l.order, namespace)
	}
	l.queues[namespace] = append(l.queues[namespace], t)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	select {
	case <-t.ready:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		t.cancelled = true
		l.mu.Unlock()
		return ctx.Err() //nolint:wrapcheck // the caller only stops
	}
}

// run grants at the limiter's pace until ctx ends; the Manager runs it in
// its goroutine group.
func (l *fairLimiter) run(ctx context.Context) {
	if l.limiter == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		}
		for l.waiting() {
			if err := l.limiter.Wait(ctx); err != nil {
				return
			}
			l.grant()
		}
	}
}

func (l *fairLimiter) waiting() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.order) > 0
}

// grant wakes the oldest live waiter of the next namespace in turn.
func (l *fairLimiter) grant() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.order) > 0 {
		ns := l.order[0]
		l.order = l.order[1:]
		q := l.queues[ns]
		var t *ticket
		for len(q) > 0 && t == nil {
			if !q[0].cancelled {
				t = q[0]
			}
			q = q[1:]
		}
		if len(q) > 0 {
			l.queues[ns] = q
			l.order = append(l.order, ns)
		} else {
			delete(l.queues, ns)
		}
		if t != nil {
			close(t.ready)
			return
		}
	}
}

// perSecond is the configured rate, 0 for unlimited.
func (l *fairLimiter) perSecond() float64 {
	if l == nil || l.limiter == nil {
		return 0
	}
	return float64(l.limiter.Limit())
}

// waitToOpen waits for the slice's turn to open a stream and counts the wait.
func (p *pipeline) waitToOpen(ctx context.Context, namespace string) error {
	start := time.Now()
	err := p.deps.opens.wait(ctx, namespace)
	p.stats.opens.Add(1)
	p.stats.openWaitNanos.Add(int64(time.Since(start)))
	return err
}
