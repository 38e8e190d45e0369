package sinks

import (
	"context"
	"sync"
	"time"

	"github.com/log-capturer/log-capturer/capture"
)

// WhenFull policies, as in the SinkTarget API.
const (
	Block      = "Block"
	DropOldest = "DropOldest"
	DropNewest = "DropNewest"
)

// recordOverhead is what a queued record costs beyond its line: the
// engine's tracked record (the Record, its container and position, its
// acknowledgement count), the queue's and the tracker's slots for it, and
// the rounding of the line's allocation. The metadata strings are shared by
// every record of a container and cost nothing per record. Measured by
// capture/workers' TestQueuedRecordsAreCountedAtTheirCost, which keeps the
// heap per queued byte within 1.0 ± 0.5 for lines of 20 B to 16 KiB
// (without it, 20 B lines took 3.9 heap bytes per counted byte).
const recordOverhead = 288

// recordSize is what a record costs in a queue: the memory the bound
// (buffer.maxBytes) is about.
func recordSize(r *capture.Record) int64 {
	return int64(len(r.Line) + recordOverhead)
}

// lineBytes is what a record adds to a batch, whose bound (batch.maxBytes)
// is in bytes of log lines.
func lineBytes(r *capture.Record) int64 { return int64(len(r.Line)) }

// queue is a FIFO of records bounded in bytes, with one pusher and one
// popper. A record larger than the bound is taken when the queue is empty,
// so that it cannot block forever. Its bytes also count against its
// namespace's share of the process's Budget.
type queue struct {
	max    int64
	policy string
	budget *Budget
	ns     string

	mu     sync.Mutex
	recs   []*capture.Record
	head   int
	bytes  int64
	closed bool

	// notify wakes the popper after a push or close; space wakes a blocked pusher.
	notify chan struct{}
	space  chan struct{}

	// onDrop counts dropped lines by reason; onShare is told each time a
	// record found the namespace's share full.
	onDrop  func(n int, reason dropReason)
	onShare func()
}

func newQueue(maxBytes int64, policy string, budget *Budget, ns string, onDrop func(int, dropReason), onShare func()) *queue {
	return &queue{max: maxBytes, policy: policy, budget: budget, ns: ns, onDrop: onDrop, onShare: onShare,
		notify: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push adds r, applying the queue's policy when it is full or its
// namespace's share of the budget is. With Block it waits for room until
// ctx ends.
func (q *queue) push(ctx context.Context, r *capture.Record) error {
	size := recordSize(r)
	for {
		q.mu.Lock()
		fits := q.bytes == 0 || q.bytes+size <= q.max
		var freed <-chan struct{}
		if fits {
			var ok bool
			if ok, freed = q.budget.reserve(q.ns, size); ok {
				q.recs = append(q.recs, r)
				q.bytes += size
				q.mu.Unlock()
				signal(q.notify)
				return nil
			}
			q.onShare()
		}
		reason := dropBufferFull
		if fits {
			reason = dropMemoryShare
		}
		// A dropped record is done with: it was counted, and the position
		// may pass it.
		switch {
		case q.policy == DropNewest, q.policy == DropOldest && q.head == len(q.recs):
			q.mu.Unlock()
			q.onDrop(1, reason)
			r.Ack()
			return nil
		case q.policy == DropOldest:
			var (
				dropped []*capture.Record
				freedN  int64
			)
			// Make room in the queue, or (for the share) at least as much
			// as r needs, from this queue's own oldest records.
			for q.head < len(q.recs) && (q.bytes+size > q.max || (fits && freedN < size)) {
				n := recordSize(q.recs[q.head])
				q.bytes -= n
				freedN += n
				dropped = append(dropped, q.recs[q.head])
				q.recs[q.head] = nil
				q.head++
			}
			q.compact()
			q.mu.Unlock()
			q.budget.release(q.ns, freedN)
			q.onDrop(len(dropped), reason)
			capture.AckAll(dropped)
			continue
		}
		q.mu.Unlock()
		select {
		case <-q.space:
		case <-freed: // nil unless the share was full
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// compact drops the consumed head of the slice once it is large.
func (q *queue) compact() {
	if q.head > 1024 && q.head*2 > len(q.recs) {
		n := copy(q.recs, q.recs[q.head:])
		clear(q.recs[n:])
		q.recs = q.recs[:n]
		q.head = 0
	}
	if q.head == len(q.recs) {
		q.recs = q.recs[:0]
		q.head = 0
	}
}

// close lets the popper drain what is queued and then stop.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	signal(q.notify)
}

// sent gives the budget back the bytes of a batch the sender is done with
// (delivered, refused or given up): a batch in flight still holds memory, so
// it counts against the share until then.
func (q *queue) sent(batch []*capture.Record) {
	var n int64
	for _, r := range batch {
		n += recordSize(r)
	}
	q.budget.release(q.ns, n)
}

// discard forgets what is still queued once nobody will send it (the
// records are not acknowledged: the workers read them again), giving its
// bytes back to the budget.
func (q *queue) discard() {
	q.mu.Lock()
	n := q.bytes
	clear(q.recs)
	q.recs, q.head, q.bytes = nil, 0, 0
	q.mu.Unlock()
	q.budget.release(q.ns, n)
}

// size is the queued bytes.
func (q *queue) size() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

// popBatch waits for the first record, then collects records until the batch
// holds maxBytes or maxWait passed since the first one. It returns nil when
// the queue is closed and empty, or ctx ended.
func (q *queue) popBatch(ctx context.Context, dst []*capture.Record, maxBytes int64, maxWait time.Duration) []*capture.Record {
	var (
		batchBytes int64
		timer      *time.Timer
		deadline   <-chan time.Time
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		q.mu.Lock()
		for q.head < len(q.recs) {
			r := q.recs[q.head]
			l := lineBytes(r)
			if len(dst) > 0 && batchBytes+l > maxBytes {
				break
			}
			dst = append(dst, r)
			batchBytes += l
			q.bytes -= recordSize(r)
			q.recs[q.head] = nil
			q.head++
		}
		q.compact()
		closed := q.closed
		empty := q.head == len(q.recs)
		q.mu.Unlock()
		if len(dst) > 0 {
			signal(q.space)
		}
		switch {
		case len(dst) > 0 && (batchBytes >= maxBytes || !empty || closed):
			return dst
		case len(dst) == 0 && closed:
			return nil
		}
		if len(dst) > 0 && timer == nil {
			timer = time.NewTimer(maxWait)
			deadline = timer.C
		}
		select {
		case <-q.notify:
		case <-deadline:
			return dst
		case <-ctx.Done():
			if len(dst) > 0 {
				return dst
			}
			return nil
		}
	}
}
