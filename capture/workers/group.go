package workers

import (
	"context"
	"sync"
	"sync/atomic"
)

// group owns goroutines: every goroutine it starts gets the group's context,
// is counted while it runs, and is waited for by Stop. The count is what the
// metrics report, so the goroutine numbers in status are facts.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	n      atomic.Int64
	parent *group
}

// newGroup returns a group whose context ends with parent.
func newGroup(parent context.Context) *group {
	ctx, cancel := context.WithCancel(parent)
	return &group{ctx: ctx, cancel: cancel}
}

// child returns a group whose goroutines also count towards g.
func (g *group) child() *group {
	c := newGroup(g.ctx)
	c.parent = g
	return c
}

// Go runs f in a new goroutine owned by the group.
func (g *group) Go(f func(ctx context.Context)) {
	g.add(1)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer g.add(-1)
		f(g.ctx)
	}()
}

func (g *group) add(d int64) {
	for x := g; x != nil; x = x.parent {
		x.n.Add(d)
	}
}

// Count is how many of the group's goroutines (children's included) run now.
func (g *group) Count() int { return int(g.n.Load()) }

// Stop cancels the group's context and waits for all its goroutines.
func (g *group) Stop() {
	g.cancel()
	g.wg.Wait()
}

// Wait waits for the group's goroutines without cancelling them.
func (g *group) Wait() { g.wg.Wait() }
