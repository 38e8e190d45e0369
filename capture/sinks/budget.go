package sinks

import (
	"strings"
	"sync"
)

// Budget is the process-wide memory budget for queued records, divided
// fairly between namespaces: each namespace with at least one queue may hold
// total ÷ namespaces bytes, over all its pipelines and sinks. A namespace
// over its share gets its own whenFull behaviour (Block waits, the Drop
// policies drop and count) while the others are untouched: a tenant whose
// destination hangs fills only its own share. Records are counted at their
// real cost (recordSize). A nil *Budget is unlimited.
//
// When a namespace appears the shares shrink; a namespace that was over its
// new share admits nothing until it has drained below it, so the sum exceeds
// the total only until then, and never by more than the total.
type Budget struct {
	total int64

	mu sync.Mutex
	ns map[string]*nsShare
}

type nsShare struct {
	queues int
	used   int64
	// freed is closed (and replaced) when bytes are released while a
	// pusher waits on it.
	freed   chan struct{}
	waiting bool
}

// NewBudget returns a budget of total bytes; zero or less is unlimited (nil).
func NewBudget(total int64) *Budget {
	if total <= 0 {
		return nil
	}
	return &Budget{total: total, ns: map[string]*nsShare{}}
}

// Total is the budget in bytes, zero when unlimited.
func (b *Budget) Total() int64 {
	if b == nil {
		return 0
	}
	return b.total
}

// namespaceOf is the namespace of a pipeline key "<namespace>/<name>".
func namespaceOf(pipeline string) string {
	ns, _, _ := strings.Cut(pipeline, "/")
	return ns
}

func (b *Budget) join(ns string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.ns[ns]
	if s == nil {
		s = &nsShare{freed: make(chan struct{})}
		b.ns[ns] = s
	}
	s.queues++
}

func (b *Budget) leave(ns string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := b.ns[ns]; s != nil {
		if s.queues--; s.queues <= 0 && s.used <= 0 {
			delete(b.ns, ns)
		}
	}
}

// shareLocked is what one namespace may hold now.
func (b *Budget) shareLocked() int64 { return b.total / int64(max(len(b.ns), 1)) }

// reserve takes n bytes of ns's share. When the share is full it returns
// false and a channel closed when some of the namespace's bytes are
// released. A namespace that holds nothing may always take one record, so
// that a record larger than the share cannot block forever.
func (b *Budget) reserve(ns string, n int64) (bool, <-chan struct{}) {
	if b == nil {
		return true, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.ns[ns]
	if s == nil { // a queue always joins first; be safe anyway
		s = &nsShare{freed: make(chan struct{})}
		b.ns[ns] = s
	}
	if s.used == 0 || s.used+n <= b.shareLocked() {
		s.used += n
		return true, nil
	}
	s.waiting = true
	return false, s.freed
}

// release gives n bytes back to ns's share.
func (b *Budget) release(ns string, n int64) {
	if b == nil || n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.ns[ns]
	if s == nil {
		return
	}
	s.used -= n
	if s.waiting {
		close(s.freed)
		s.freed, s.waiting = make(chan struct{}), false
	}
	if s.queues <= 0 && s.used <= 0 {
		delete(b.ns, ns)
	}
}

// usage is what ns holds now, its share and the number of namespaces.
func (b *Budget) usage(ns string) (used, share int64, namespaces int) {
	if b == nil {
		return 0, 0, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := b.ns[ns]; s != nil {
		used = s.used
	}
	return used, b.shareLocked(), len(b.ns)
}

// Used is what the whole process holds in queues now.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var n int64
	for _, s := range b.ns {
		n += s.used
	}
	return n
}
