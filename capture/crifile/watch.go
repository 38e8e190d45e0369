package crifile

import (
	"context"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watcher tells followers waiting at the end of their files that their
// containers' directories changed: one inotify instance for the process
// (through fsnotify), read by the goroutine of Run. A directory that cannot
// be watched, or a Watcher without inotify, is polled instead; a watched
// one is looked at also every Safety, in case an event was lost.
type Watcher struct {
	// Poll is how often an unwatched directory is looked at (250ms when
	// zero); Safety how often a watched one is (2s when zero).
	Poll, Safety time.Duration

	once sync.Once
	w    *fsnotify.Watcher
	err  error

	mu    sync.Mutex
	dirs  map[string]map[*Wait]struct{}
	inotf bool
}

// Wait is one follower's registration with a Watcher.
type Wait struct {
	w       *Watcher
	dir     string
	ch      chan struct{}
	watched bool
}

func (w *Watcher) init() {
	w.once.Do(func() {
		w.dirs = map[string]map[*Wait]struct{}{}
		w.w, w.err = fsnotify.NewWatcher()
		w.inotf = w.err == nil
	})
}

// Inotify reports whether changes are noticed through inotify (false when
// the process could not create an instance: every directory is polled).
func (w *Watcher) Inotify() bool {
	w.init()
	return w.inotf
}

// Run reads the change events until ctx ends, then releases the inotify
// instance. Its owner runs it in one goroutine and waits for it.
func (w *Watcher) Run(ctx context.Context) {
	w.init()
	if w.w == nil {
		return
	}
	defer func() { _ = w.w.Close() }()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.w.Events:
			if !ok {
				return
			}
			w.notify(filepath.Dir(ev.Name))
		case _, ok := <-w.w.Errors:
			if !ok {
				return
			}
			// An overflow lost events: wake everyone, they look themselves.
			w.notifyAll()
		}
	}
}

func (w *Watcher) notify(dir string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for x := range w.dirs[dir] {
		x.wake()
	}
}

func (w *Watcher) notifyAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ws := range w.dirs {
		for x := range ws {
			x.wake()
		}
	}
}

// Watch registers a wait for changes in dir. Close releases it.
func (w *Watcher) Watch(dir string) *Wait {
	w.init()
	x := &Wait{w: w, dir: dir, ch: make(chan struct{}, 1)}
	w.mu.Lock()
	defer w.mu.Unlock()
	ws := w.dirs[dir]
	if ws == nil {
		ws = map[*Wait]struct{}{}
		if w.w != nil && w.w.Add(dir) != nil {
			// Not watchable (gone, or out of watches): polled.
			ws = nil
		}
		if ws != nil {
			w.dirs[dir] = ws
		}
	}
	if ws != nil {
		ws[x] = struct{}{}
		x.watched = true
	}
	return x
}

func (x *Wait) wake() {
	select {
	case x.ch <- struct{}{}:
	default:
	}
}

// Wait returns when the directory changed, after the poll or safety
// interval, or when ctx ends.
func (x *Wait) Wait(ctx context.Context) error {
	d := durationOr(x.w.Poll, 250*time.Millisecond)
	if x.watched {
		d = durationOr(x.w.Safety, 2*time.Second)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err() //nolint:wrapcheck // the caller's own context
	case <-x.ch:
	case <-t.C:
	}
	return nil
}

// Close releases the registration; the directory's watch goes with its
// last one.
func (x *Wait) Close() {
	if !x.watched {
		return
	}
	x.watched = false
	w := x.w
	w.mu.Lock()
	defer w.mu.Unlock()
	ws := w.dirs[x.dir]
	delete(ws, x)
	if len(ws) == 0 {
		delete(w.dirs, x.dir)
		_ = w.w.Remove(x.dir) // fails only when the directory went, and its watch with it
	}
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
