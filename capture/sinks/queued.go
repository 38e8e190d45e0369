package sinks

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/log-capturer/log-capturer/capture"
)

// deliverer sends one batch to a destination. It returns nil on success, a
// *sendError for a failure the destination reported, a *partialError when
// the destination stored the batch but refused some of its records for
// good, or any other error (network) that is retried.
type deliverer interface {
	deliver(ctx context.Context, batch []*capture.Record) error
	close(ctx context.Context) error
}

// sendError is a failure the destination answered with.
type sendError struct {
	status int
	// code names the answer where it is not an HTTP status (a gRPC status
	// code); status is 0 then.
	code       string
	retryable  bool
	retryAfter time.Duration
	message    string
}

func (e *sendError) Error() string {
	if e.code != "" {
		return fmt.Sprintf("destination answered %s: %s", e.code, e.message)
	}
	return fmt.Sprintf("destination answered %d: %s", e.status, e.message)
}

// partialError is a send the destination took in part. Without retry, it
// stored every record of the batch but rejected ones, which it refused for
// good without saying which (OTLP's partial success): the batch is done
// with, acknowledged, the rejected records counted as dropped (rejected)
// and the others as sent, and nothing is sent again, which would duplicate
// what was stored. With retry, the destination named the records that
// failed for now (indices into the batch; Kafka's per-record results):
// every other record is done with as above, and only those are sent again,
// after the backoff; unknown says their outcome is unknown (they may have
// been stored), so that they count as possible duplicates once delivered.
// message says why the rejected were refused, retryMessage why the others
// failed.
type partialError struct {
	rejected     int
	retry        []int
	unknown      bool
	message      string
	retryMessage string
}

func (e *partialError) Error() string {
	if len(e.retry) > 0 {
		return fmt.Sprintf("%d records failed, to be sent again: %s", len(e.retry), e.retryMessage)
	}
	return fmt.Sprintf("destination rejected %d records: %s", e.rejected, e.message)
}

// queuedSink is the Sink of one (pipeline, SinkTarget): a bounded byte
// queue, a batcher and a sender with retries, in one goroutine (Run).
type queuedSink struct {
	pipeline string
	cfg      capture.SinkConfig
	q        *queue
	d        deliverer
	c        *counters
	duration prometheus.Observer
	onReject func(message string)
	// release tells the Factory the sink is closed.
	release func()

	// state is sinkNew until Run or Close claims the sender's work.
	state atomic.Int32
	done  chan struct{}

	// mu guards the current run of failures, which is state, not a count.
	mu            sync.Mutex
	failingSince  time.Time
	lastError     string
	lastRejection string
}

// newQueuedSink returns the sink with its queue, whose bytes count against
// the pipeline's namespace's share of budget; the Factory gives it its
// deliverer, counters and callbacks.
func newQueuedSink(pipeline string, cfg capture.SinkConfig, budget *Budget) *queuedSink {
	s := &queuedSink{pipeline: pipeline, cfg: cfg, done: make(chan struct{})}
	s.q = newQueue(cfg.BufferMaxBytes, cfg.WhenFull, budget, namespaceOf(pipeline), s.drop, s.shareLimited)
	return s
}

func (s *queuedSink) shareLimited() {
	s.c.memoryShareLimited.Add(1)
	s.c.lastShareLimitedNanos.Store(time.Now().UnixNano())
}

// Write queues r, applying the sink's whenFull policy.
func (s *queuedSink) Write(ctx context.Context, r *capture.Record) error {
	return s.q.push(ctx, r)
}

const (
	sinkNew int32 = iota
	sinkRunning
	sinkClosedBeforeRun
)

// Run batches and sends until Close drained the queue or ctx ends.
func (s *queuedSink) Run(ctx context.Context) {
	if !s.state.CompareAndSwap(sinkNew, sinkRunning) {
		return
	}
	defer close(s.done)
	s.drain(ctx)
}

// drain sends batches until the queue is closed and empty, or ctx ends.
func (s *queuedSink) drain(ctx context.Context) {
	batch := make([]*capture.Record, 0, 1024)
	for {
		batch = s.q.popBatch(ctx, batch[:0], s.cfg.BatchMaxBytes, s.cfg.BatchMaxWait)
		if batch == nil {
			return
		}
		s.send(ctx, batch)
		s.q.sent(batch)
		clear(batch)
	}
}

// send delivers one batch, retrying what can succeed later with exponential
// backoff and jitter (or the server's Retry-After) until ctx ends.
func (s *queuedSink) send(ctx context.Context, batch []*capture.Record) {
	backoff := s.cfg.MinBackoff
	uncertain := 0
	for {
		capture.Sending(batch)
		start := time.Now()
		err := s.d.deliver(ctx, batch)
		s.duration.Observe(time.Since(start).Seconds())
		var pe *partialError
		if err == nil || errors.As(err, &pe) && len(pe.retry) == 0 {
			s.finish(batch, pe, uncertain)
			return
		}
		switch {
		case pe != nil:
			// Done with every record but those to send again.
			var done []*capture.Record
			done, batch = splitRetry(batch, pe.retry)
			s.finish(done, pe, uncertain)
			if pe.unknown {
				uncertain++
			}
		case outcomeUnknown(err):
			uncertain++
		}
		s.failed(err)
		var se *sendError
		if errors.As(err, &se) && !se.retryable {
			// The batch can never succeed: it is counted and done with. The
			// destination answered, so the sink is not failing; the
			// rejection is its own outcome.
			s.drop(len(batch), dropRejected)
			capture.AckAll(batch)
			msg := fmt.Sprintf("%s rejected a batch of %d lines for pipeline %s: %s",
				s.cfg.Name, len(batch), s.pipeline, se.Error())
			s.rejected(msg)
			if s.onReject != nil {
				s.onReject(msg)
			}
			return
		}
		wait := jitter(backoff)
		if se != nil && se.retryAfter > 0 {
			wait = min(se.retryAfter, s.cfg.MaxBackoff)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			// Not acknowledged: the workers read these lines again.
			s.drop(len(batch), dropShutdown)
			return
		}
		s.c.retries.Add(1)
		backoff = min(2*backoff, s.cfg.MaxBackoff)
	}
}

// finish counts and acknowledges records the sink is done with: delivered,
// but for pe.rejected of them that the destination refused for good.
// uncertain attempts before may have stored them already.
func (s *queuedSink) finish(batch []*capture.Record, pe *partialError, uncertain int) {
	rejected := 0
	if pe != nil {
		rejected = min(max(pe.rejected, 0), len(batch))
	}
	if len(batch) > rejected {
		s.succeeded(batch, rejected)
	}
	capture.AckAll(batch)
	if uncertain > 0 {
		// Attempts whose outcome was unknown may have been stored too.
		s.c.possibleDuplicates.Add(int64(uncertain * len(batch)))
	}
	if rejected > 0 {
		s.drop(rejected, dropRejected)
		msg := fmt.Sprintf("%s rejected %d of a batch of %d lines for pipeline %s: %s",
			s.cfg.Name, rejected, len(batch), s.pipeline, remoteMessage([]byte(pe.message)))
		s.rejected(msg)
		if s.onReject != nil {
			s.onReject(msg)
		}
	}
}

// splitRetry returns the records of batch not listed in retry, and those
// listed, each in the batch's order; it does not change batch.
func splitRetry(batch []*capture.Record, retry []int) (done, again []*capture.Record) {
	listed := make([]bool, len(batch))
	n := 0
	for _, i := range retry {
		if i >= 0 && i < len(batch) && !listed[i] {
			listed[i] = true
			n++
		}
	}
	again = make([]*capture.Record, 0, n)
	done = make([]*capture.Record, 0, len(batch)-n)
	for i, r := range batch {
		if listed[i] {
			again = append(again, r)
		} else {
			done = append(done, r)
		}
	}
	return done, again
}

// retrySafe is a failure without an answer whose repeat cannot store the
// batch twice (the S3 sink PUTs the same key again, which overwrites).
type retrySafe struct{ err error }

func (e *retrySafe) Error() string { return e.err.Error() }
func (e *retrySafe) Unwrap() error { return e.err }

// outcomeUnknown tells whether a failed send may nevertheless have been
// stored: the request went out but no answer came back (a timeout or a
// connection lost after sending). A refused connection or an HTTP status is
// a known outcome; so is a retrySafe failure, for what counts here.
func outcomeUnknown(err error) bool {
	var se *sendError
	var rs *retrySafe
	if errors.As(err, &se) || errors.As(err, &rs) {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	return true
}

// jitter spreads d by ±20%.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d - d/5 + time.Duration(rand.Int64N(int64(d)*2/5+1))
}

// succeeded counts a delivered batch of which the destination refused
// rejected records without saying which: their share of the batch's bytes
// is not counted as sent.
func (s *queuedSink) succeeded(batch []*capture.Record, rejected int) {
	var bytes int64
	for _, r := range batch {
		bytes += int64(len(r.Line))
	}
	if rejected > 0 {
		bytes -= bytes * int64(rejected) / int64(len(batch))
	}
	s.c.sentLines.Add(int64(len(batch) - rejected))
	s.c.sentBytes.Add(bytes)
	s.c.lastSuccessNanos.Store(time.Now().UnixNano())
	s.mu.Lock()
	s.failingSince = time.Time{}
	s.mu.Unlock()
}

func (s *queuedSink) failed(err error) {
	s.c.failedBatches.Add(1)
	s.mu.Lock()
	if s.failingSince.IsZero() {
		s.failingSince = time.Now()
	}
	s.lastError = err.Error()
	s.mu.Unlock()
}

func (s *queuedSink) rejected(msg string) {
	s.c.lastRejectedNanos.Store(time.Now().UnixNano())
	s.mu.Lock()
	s.failingSince, s.lastRejection = time.Time{}, msg
	s.mu.Unlock()
}

func (s *queuedSink) drop(n int, reason dropReason) {
	if n > 0 {
		s.c.dropped[reason].Add(int64(n))
	}
}

// Stats reports the sink's numbers.
func (s *queuedSink) Stats() capture.SinkStats {
	st := s.c.stats(s.cfg.Name)
	st.QueueBytes = s.q.size()
	st.QueueMaxBytes = s.cfg.BufferMaxBytes
	st.WhenFull = s.cfg.WhenFull
	st.NamespaceQueuedBytes, st.NamespaceShareBytes, st.BudgetNamespaces = s.q.budget.usage(s.q.ns)
	st.MemoryBudgetBytes = s.q.budget.Total()
	s.mu.Lock()
	st.FailingSince, st.LastError, st.LastRejection = s.failingSince, s.lastError, s.lastRejection
	s.mu.Unlock()
	return st
}

// Close lets Run send what is queued until ctx ends, then releases the
// destination.
func (s *queuedSink) Close(ctx context.Context) error {
	s.q.close()
	var err error
	if s.state.CompareAndSwap(sinkNew, sinkClosedBeforeRun) {
		s.drain(ctx) // Run never started: send what is queued here
	} else {
		select {
		case <-s.done:
		case <-ctx.Done():
			err = fmt.Errorf("sink %s did not drain in time: %w", s.cfg.Name, ctx.Err())
		}
	}
	if cerr := s.d.close(ctx); cerr != nil && err == nil {
		err = cerr
	}
	s.q.discard()
	if s.release != nil {
		s.release()
	}
	return err
}
