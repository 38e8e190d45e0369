package workers

import "sync"

// namespaceSlots bounds the log streams open at once in one namespace,
// across all its pipelines (the operator's --max-streams-per-namespace), so
// that one tenant cannot take every stream the process and the API server
// can hold. A pipeline that finds its namespace full registers a wake
// channel and is signalled when a stream of the namespace ends.
type namespaceSlots struct {
	max int // zero is unlimited

	mu      sync.Mutex
	used    map[string]int
	waiters map[string]map[chan struct{}]struct{}
}

func newNamespaceSlots(maxPerNamespace int) *namespaceSlots {
	return &namespaceSlots{max: maxPerNamespace, used: map[string]int{}, waiters: map[string]map[chan struct{}]struct{}{}}
}

// tryAcquire takes a slot of ns, or registers wake to be signalled when one
// frees and returns false.
func (s *namespaceSlots) tryAcquire(ns string, wake chan struct{}) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.max <= 0 || s.used[ns] < s.max {
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
	return s.used[ns], s.max
}

// signal wakes whoever waits on c without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
