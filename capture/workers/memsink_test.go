package workers_test

import (
	"context"
	"sync"

	"github.com/log-capturer/log-capturer/capture"
)

// MemorySink keeps every record in memory. The engine tests use it to
// count what arrived.
type MemorySink struct {
	mu      sync.Mutex
	records []capture.Record
	closed  int
}

// Write appends a copy of r.
func (s *MemorySink) Write(_ context.Context, r *capture.Record) error {
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
func (s *MemorySink) Records() []capture.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]capture.Record(nil), s.records...)
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
