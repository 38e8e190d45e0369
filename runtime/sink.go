package runtime

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Sink receives every record of a pipeline, in order per container. Write
// blocks while the sink cannot take more (backpressure) and returns the
// context's error when ctx ends first. Run is the sink's sender: the
// pipeline runs it in a goroutine it owns, and it returns once Close has
// drained it or ctx ended (a sink without a sender returns at once). Close
// flushes and releases the sink; it is called once, after the last Write.
type Sink interface {
	Write(ctx context.Context, r *Record) error
	Run(ctx context.Context)
	Close(ctx context.Context) error
}

// SinkStats are what a sink reports about its deliveries.
type SinkStats struct {
	Name          string
	SentLines     int64
	SentBytes     int64
	FailedBatches int64
	Retries       int64
	DroppedLines  int64
	QueueBytes    int64
	QueueMaxBytes int64
	LastSuccess   time.Time
	// FailingSince is when the current run of failed sends began, zero
	// while the sink delivers.
	FailingSince time.Time
	LastError    string
}

// StatsReporter is a Sink that reports SinkStats.
type StatsReporter interface {
	Stats() SinkStats
}

// SinkFactory builds the sink of one pipeline for one SinkConfig.
type SinkFactory func(pipeline string, cfg SinkConfig) (Sink, error)

// MemorySink keeps every record in memory. Tests and the demo use it to
// count what arrived.
type MemorySink struct {
	mu      sync.Mutex
	records []Record
	closed  int
}

// Write appends a copy of r.
func (s *MemorySink) Write(_ context.Context, r *Record) error {
	s.mu.Lock()
	s.records = append(s.records, *r)
	s.mu.Unlock()
	r.Ack()
	return nil
}

// Run returns at once: a MemorySink has no sender.
func (s *MemorySink) Run(context.Context) {}

// Close records that the sink was closed.
func (s *MemorySink) Close(context.Context) error {
	s.mu.Lock()
	s.closed++
	s.mu.Unlock()
	return nil
}

// Records returns a copy of what arrived so far.
func (s *MemorySink) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.records...)
}

// Len is how many records arrived.
func (s *MemorySink) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.records)
}

// Closed is how many times Close was called.
func (s *MemorySink) Closed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Tracked registers records with acknowledgement tracking as a pipeline's
// fan-out does for sinks sinks, and returns a function that tells how many
// of them every sink acknowledged. Sink tests use it to check that a sink
// acknowledges exactly what it delivered or dropped by policy.
func Tracked(records []*Record, sinks int) (acknowledged func() int) {
	ps := newPositions()
	for _, r := range records {
		r.key = containerKey{uid: "tracked", name: r.Pod}
		ps.track(r, sinks)
	}
	return func() int {
		n := 0
		for _, r := range records {
			if atomic.LoadInt32(&r.pending) <= 0 {
				n++
			}
		}
		return n
	}
}
