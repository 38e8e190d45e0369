package workers

import "sync"

// namespaceSlots bounds the log streams open at once in one namespace,
// across all its pipelines (the operator's --max-streams-per-namespace), so
// that one tenant cannot take every stream the process and the API server
// can hold. A pipeline that finds its namespace full registers a wake
// channel and is signalled when a stream of the namespace ends.
type namespaceSlots struct {
	max int // zero is unlimited

	mu sync.Mutex
	// limits are the namespaces whose admin policy replaces max.
	limits  map[string]int
	used    map[string]int
	waiters map[string]map[chan struct{}]struct{}
}

func newNamespaceSlots(maxPerNamespace int) *namespaceSlots {
	return &namespaceSlots{max: maxPerNamespace, limits: map[string]int{}, used: map[string]int{}, waiters: map[string]map[chan struct{}]struct{}{}}
}

// limitLocked is the limit of ns: its policy's, else the operator's.
func (s *namespaceSlots) limitLocked(ns string) int {
	if l, ok := s.limits[ns]; ok {
		return l
	}
	return s.max
}

// setLimit gives ns its own limit (a CapturePolicy's), or back the
// operator's with zero. Pipelines that wait are woken when it grows.
func (s *namespaceSlots) setLimit(ns string, limit int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	before := s.limitLocked(ns)
	if limit > 0 {
		s.limits[ns] = limit
	} else {
		delete(s.limits, ns)
	}
	if after := s.limitLocked(ns); after <= 0 || (before > 0 && after > before) {
		for w := range s.waiters[ns] {
			signal(w)
		}
		delete(s.waiters, ns)
	}
}

// tryAcquire takes a slot of ns, or registers wake to be signalled when one
// frees and returns false.
func (s *namespaceSlots) tryAcquire(ns string, wake chan struct{}) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit := s.limitLocked(ns); limit <= 0 || s.used[ns] < limit {
		s.used[ns]++
		return true
	}
	w := s.waiters[ns]
	if w == nil {
		w = map[chan struct{}]struct{}{}
		s.waiters[ns] = w
	}
	w[wake] = struct{}{}
	return false
}

// release gives back a slot of ns and wakes the pipelines that wait for one.
func (s *namespaceSlots) release(ns string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used[ns]--; s.used[ns] <= 0 {
		delete(s.used, ns)
	}
	for w := range s.waiters[ns] {
		signal(w)
	}
	delete(s.waiters, ns)
}

// unregister forgets a stopped pipeline's wake channel.
func (s *namespaceSlots) unregister(ns string, wake chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.waiters[ns]; w != nil {
		delete(w, wake)
		if len(w) == 0 {
			delete(s.waiters, ns)
		}
	}
}

// inUse is how many streams of ns are open now, and the limit (zero when
// unlimited).
func (s *namespaceSlots) inUse(ns string) (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used[ns], s.limitLocked(ns)
}

// signal wakes whoever waits on c without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
