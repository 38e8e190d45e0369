// Package faults is the schedule of failures the test receivers inject:
// for the next n requests, or for every request until Recover, and the
// release of the requests they hold hanging. Only test doubles import it.
package faults

import "sync"

// Schedule hands out the faults of requests in arrival order. The zero
// value has none scheduled.
type Schedule[F any] struct {
	mu      sync.Mutex
	next    []F
	sticky  *F
	release chan struct{}
	closed  bool
}

// FailNext gives the next n requests f.
func (s *Schedule[F]) FailNext(n int, f F) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.next = append(s.next, f)
	}
}

// FailAll gives every request f until Recover.
func (s *Schedule[F]) FailAll(f F) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sticky = &f
}

// Recover ends FailAll and FailNext.
func (s *Schedule[F]) Recover() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sticky, s.next = nil, nil
}

// Take returns the fault of the request arriving now, false for none.
func (s *Schedule[F]) Take() (F, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sticky != nil {
		return *s.sticky, true
	}
	if len(s.next) == 0 {
		var none F
		return none, false
	}
	f := s.next[0]
	s.next = s.next[1:]
	return f, true
}

// Released is closed by Close: a hanging request returns then.
func (s *Schedule[F]) Released() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release == nil {
		s.release = make(chan struct{})
	}
	return s.release
}

// Close releases every hanging request; later hangs return at once.
func (s *Schedule[F]) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release == nil {
		s.release = make(chan struct{})
	}
	if !s.closed {
		s.closed = true
		close(s.release)
	}
}
