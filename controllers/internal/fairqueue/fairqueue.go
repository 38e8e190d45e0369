// Package fairqueue orders a reconcile work queue fairly between fairness
// keys (for reconcile requests: namespaces), so that one namespace that churns
// many objects cannot delay the reconciles of another namespace.
//
// Queue is only the ordering: it plugs into client-go's work queue as its
// workqueue.Queue storage, and NewRateLimitingQueue builds client-go's own
// typed, delaying and rate-limiting queues around it, so that deduplication,
// the dirty and processing sets, delays, rate limiting and metrics all stay
// client-go's.
package fairqueue

import (
	"k8s.io/client-go/util/workqueue"
)

// Sizes past which emptied storage is dropped instead of reused, and the
// number of popped slots a FIFO tolerates before it compacts.
const (
	shrinkCap   = 1024
	minCompact  = 32
	shrinkPeakN = 1024
)

// Queue is a workqueue.Queue that is FIFO within one fairness key and
// round-robin between keys: each Pop takes the head of the next key that has
// items, in turn. A key whose FIFO empties leaves the ring, and a key that
// gets an item again joins the ring at its end.
//
// Queue does no locking of its own: client-go's typed queue calls it only
// while holding its lock, which is the only way it is meant to be used. Use
// New to make one; the zero Queue is not usable.
type Queue[T comparable] struct {
	key   func(T) string
	fifos map[string]*fifo[T]
	// ring holds each key with a non-empty FIFO exactly once, in the order
	// in which they are served.
	ring fifo[string]
	// n is the number of items in all FIFOs.
	n int
	// peak is the most keys held at once since fifos was last made; it
	// tells when to remake the map, since Go maps do not shrink.
	peak int
}

var _ workqueue.Queue[string] = (*Queue[string])(nil)

// New returns an empty Queue whose items are kept fair by key, which names
// an item's fairness key (for a reconcile.Request: its Namespace). key must
// be deterministic for an item; it is called once per Push.
func New[T comparable](key func(T) string) *Queue[T] {
	if key == nil {
		panic("fairqueue: New needs a key func")
	}
	return &Queue[T]{key: key, fifos: map[string]*fifo[T]{}}
}

// Touch is called by client-go's typed queue when an item that is already
// queued (dirty and not being processed) is added again. Like client-go's
// default slice queue, Touch is a no-op: the item keeps its place in its
// key's FIFO, it is neither moved to the back nor duplicated.
func (q *Queue[T]) Touch(T) {}

// Push appends item to the FIFO of its key, adding the key at the end of the
// ring if the key had no items.
func (q *Queue[T]) Push(item T) {
	k := q.key(item)
	f, ok := q.fifos[k]
	if !ok {
		f = &fifo[T]{}
		q.fifos[k] = f
		q.ring.push(k)
		q.peak = max(q.peak, len(q.fifos))
	}
	f.push(item)
	q.n++
}

// Len returns the number of items in the queue, over all keys.
func (q *Queue[T]) Len() int {
	return q.n
}

// Pop removes and returns the head of the next key in the ring; that key then
// goes to the end of the ring if it has more items, or leaves it if not.
// client-go calls Pop only when Len is above zero; on an empty Queue Pop
// returns the zero T.
func (q *Queue[T]) Pop() T {
	if q.n == 0 {
		var zero T
		return zero
	}
	k := q.ring.pop()
	f := q.fifos[k]
	item := f.pop()
	q.n--
	if f.len() > 0 {
		q.ring.push(k)
		return item
	}
	delete(q.fifos, k)
	if q.n == 0 && q.peak > shrinkPeakN {
		q.fifos, q.peak = map[string]*fifo[T]{}, 0
	}
	return item
}

// fifo is a slice-backed FIFO that zeroes popped slots and compacts, so that
// it holds at most about twice its live items.
type fifo[E any] struct {
	items []E
	head  int
}

func (f *fifo[E]) len() int { return len(f.items) - f.head }

func (f *fifo[E]) push(e E) { f.items = append(f.items, e) }

// pop removes and returns the head; the fifo must not be empty.
func (f *fifo[E]) pop() E {
	var zero E
	e := f.items[f.head]
	f.items[f.head] = zero
	f.head++
	switch {
	case f.head == len(f.items):
		if cap(f.items) > shrinkCap {
			f.items = nil
		} else {
			f.items = f.items[:0]
		}
		f.head = 0
	case f.head >= minCompact && 2*f.head >= len(f.items):
		n := copy(f.items, f.items[f.head:])
		clear(f.items[n:])
		f.items, f.head = f.items[:n], 0
	}
	return e
}

// NewRateLimitingQueue returns client-go's rate-limiting queue, over its
// delaying queue, over its typed queue, whose storage is a Queue keyed by
// key. Only the order in which items are handed out is this package's: the
// deduplication of queued items, the re-queueing of an item added while it
// is processed, delays, rate limiting by rl and the metrics named name are
// all client-go's, built as the defaults of NewTypedRateLimitingQueueWithConfig
// would build them.
func NewRateLimitingQueue[T comparable](name string, key func(T) string, rl workqueue.TypedRateLimiter[T]) workqueue.TypedRateLimitingInterface[T] {
	typed := workqueue.NewTypedWithConfig(workqueue.TypedQueueConfig[T]{
		Name:  name,
		Queue: New(key),
	})
	delaying := workqueue.NewTypedDelayingQueueWithConfig(workqueue.TypedDelayingQueueConfig[T]{
		Name:  name,
		Queue: typed,
	})
	return workqueue.NewTypedRateLimitingQueueWithConfig(rl, workqueue.TypedRateLimitingQueueConfig[T]{
		Name:          name,
		DelayingQueue: delaying,
	})
}
