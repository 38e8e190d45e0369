package runtime

import (
	"context"
	"sync"
)

// Sink receives every record of a pipeline, in order per container. Write
// blocks while the sink cannot take more (backpressure) and returns the
// context's error when ctx ends first. Close flushes and releases the sink;
// it is called once, after the last Write.
type Sink interface {
	Write(ctx context.Context, r *Record) error
	Close(ctx context.Context) error
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
	return nil
}

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
