package workers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/crifile"
)

// FileSource reads the containers of the pods on one node from the
// kubelet's CRI log files instead of through the API.
type FileSource struct {
	// Root is the kubelet's pod log directory, /var/log/pods on a node.
	Root string
	// Node is the node whose pods are read from files. Pods on other nodes
	// are read through Options.Source, or not at all without one.
	Node string
	// Grace is how long a file the kubelet renamed, or the log of a
	// container instance that ended, is still read for what the runtime
	// wrote last (1s when zero).
	Grace time.Duration
	// Watcher notices file changes (inotify, polling as fallback); the
	// Manager makes one when nil and runs it.
	Watcher *crifile.Watcher
}

// checkInterval bounds how often a slice at the end of its file asks
// whether its container instance ended (a directory listing, a cache read).
const checkInterval = time.Second

// containerDir is the directory of a container's log files:
// <root>/<namespace>_<pod>_<uid>/<container>. The names come from the API
// server, which allows none with a slash; they are checked anyway, so that
// no name can point outside the root.
func (fs *FileSource) containerDir(c *container) (string, error) {
	return fs.logDir(c.namespace, c.pod, c.key)
}

// logDir is containerDir of the container k of pod in namespace.
func (fs *FileSource) logDir(namespace, pod string, k containerKey) (string, error) {
	for _, part := range []string{namespace, pod, string(k.uid), k.name} {
		if part == "" || part == "." || part == ".." || strings.ContainsAny(part, "/\x00") {
			return "", fmt.Errorf("container %s/%s/%s: %q cannot be part of a log path", namespace, pod, k.name, part)
		}
	}
	podDir := filepath.Join(fs.Root, namespace+"_"+pod+"_"+string(k.uid))
	if st, err := os.Lstat(podDir); err == nil && st.Mode()&os.ModeSymlink != 0 {
		return "", fmt.Errorf("%s is a symbolic link, not the kubelet's directory", podDir)
	}
	return filepath.Join(podDir, k.name), nil
}

// fileSlice is one slice's state while it reads a container's files.
type fileSlice struct {
	p    *pipeline
	c    *container
	res  *sliceResult
	dir  string
	wait *crifile.Wait
	f    *crifile.Follower
	// base is the log being read, "<restartCount>.log".
	base string
	// skip and since skip what was delivered when the slice started from
	// timestamps, not from a file position (a new container, or one read
	// through the API before).
	skip   resumer
	since  time.Time
	byTime bool
	// endedAt is when the slice first saw the container instance ended (a
	// newer instance, a finished container or a deleted pod) at the end
	// of its file; the file is read once more after the grace.
	endedAt   time.Time
	nextCheck time.Time
}

// runFileSlice follows one container's files for one rotation interval,
// from the container's position, and closes them before it returns. Unlike
// an API stream, it sends records within the rotation interval too: a
// pipeline whose sinks block gives its files back at the interval, so that
// no file the kubelet deleted stays pinned, and reads them again from the
// page cache when it resumes.
func (p *pipeline) runFileSlice(ctx context.Context, c *container) sliceResult {
	res := sliceResult{key: c.key, pos: c.pos, dupUntil: c.dupUntil}
	fs := p.deps.files
	dir, err := fs.containerDir(c)
	if err != nil {
		res.outcome, res.err = outcomeFailed, err
		return res
	}
	rctx, cancel := context.WithTimeout(ctx, p.cfg.RotationInterval)
	defer cancel()
	s := &fileSlice{p: p, c: c, res: &res, dir: dir, wait: fs.Watcher.Watch(dir)}
	defer s.wait.Close()
	err = s.run(rctx)
	if s.f != nil {
		res.urgent = s.f.Rotated()
		res.known = s.f.Known()
	}
	if cerr := s.close(); cerr != nil && err == nil {
		err = cerr
	}
	switch {
	case ctx.Err() != nil:
		res.outcome = outcomeStopped
	case errors.Is(err, errInstanceEnded):
		res.outcome = outcomeEnded
	case errors.Is(err, capture.ErrLogNotFound):
		res.outcome, res.err = outcomeNotFound, err
	case rctx.Err() != nil:
		res.outcome = outcomeRotated
	default:
		res.outcome, res.err = outcomeFailed, err
	}
	return res
}

// errInstanceEnded ends a slice whose container has no newer instance to
// read and will write no more: the pod is gone or the container finished.
var errInstanceEnded = errors.New("the container ended")

func (s *fileSlice) run(ctx context.Context) error {
	if err := s.open(); err != nil {
		return err
	}
	for {
		e, fpos, err := s.f.Next()
		if errors.Is(err, io.EOF) {
			if err := s.atEnd(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			if os.IsNotExist(err) {
				return s.gone(ctx)
			}
			return fmt.Errorf("reading the log of %s: %w", s.c.key, err)
		}
		s.endedAt = time.Time{}
		if err := s.deliver(ctx, e, fpos); err != nil {
			return err
		}
	}
}

// open opens the container's log at its position: a file position when
// it has one, else the instance and file that hold its timestamp.
func (s *fileSlice) open() error {
	pos := &s.res.pos
	opts := crifile.Options{MaxRecordBytes: s.p.maxLineBytes(), Grace: s.p.deps.files.Grace, Known: s.c.known}
	if pos.Log != "" {
		s.base = pos.Log
		f, gap, err := crifile.Open(s.dir, pos.Log, pos.File, opts)
		if gap.Files > 0 {
			s.lost(gap.Bytes)
		}
		if errors.Is(err, crifile.ErrNoLog) {
			// Every file of the instance is gone, and counted: forget them,
			// so that no later slice counts them again, and go on with the
			// next instance.
			pos.File, s.res.known = crifile.Position{}, []crifile.Known{}
			return s.next()
		}
		if err != nil {
			return fmt.Errorf("opening the log of %s: %w", s.c.key, err)
		}
		if gap.Moved {
			// Counted once: the next slice goes on from here even when
			// this one delivers nothing.
			pos.File = f.Position()
		}
		s.opened(f)
		return nil
	}
	insts, err := crifile.Instances(s.dir)
	if err != nil {
		return fmt.Errorf("listing the logs of %s: %w", s.c.key, err)
	}
	if len(insts) == 0 {
		return fmt.Errorf("%s: no log file yet: %w", s.dir, capture.ErrLogNotFound)
	}
	n := insts[len(insts)-1]
	if pos.Since.IsZero() {
		n = insts[0] // from the beginning: every instance's log, oldest first
	}
	f, err := crifile.OpenSince(s.dir, crifile.LogBase(n), pos.Since, opts)
	if err != nil {
		return fmt.Errorf("opening the log of %s: %w", s.c.key, err)
	}
	s.base = crifile.LogBase(n)
	s.byTime, s.since, s.skip = true, pos.Since, newResumer(*pos)
	s.opened(f)
	return nil
}

func (s *fileSlice) opened(f *crifile.Follower) {
	s.f = f
	s.p.stats.openStreams.Add(1)
}

// close closes the open follower, the slice's one file, and counts the
// malformed lines it skipped.
func (s *fileSlice) close() error {
	if s.f == nil {
		return nil
	}
	f := s.f
	s.f = nil
	s.p.stats.openStreams.Add(-1)
	s.p.stats.malformedLines.Add(int64(f.Malformed))
	if err := f.Close(); err != nil {
		return fmt.Errorf("the log of %s: %w", s.c.key, err)
	}
	return nil
}

// next moves to the log of the container's next instance, from its start;
// without one, the container ended or has not written yet.
func (s *fileSlice) next() error {
	cur, _ := crifile.ParseLogBase(s.base)
	insts, err := crifile.Instances(s.dir)
	if err != nil {
		return fmt.Errorf("listing the logs of %s: %w", s.c.key, err)
	}
	i := slices.IndexFunc(insts, func(n int) bool { return n > cur })
	if i < 0 {
		return fmt.Errorf("%s: no log after %s: %w", s.dir, s.base, capture.ErrLogNotFound)
	}
	_ = s.close() // read to its end; a failed close of a read-only file loses nothing
	base := crifile.LogBase(insts[i])
	f, _, err := crifile.Open(s.dir, base, crifile.Position{}, crifile.Options{MaxRecordBytes: s.p.maxLineBytes(), Grace: s.p.deps.files.Grace})
	if err != nil {
		return fmt.Errorf("opening the log of %s: %w", s.c.key, err)
	}
	// The next slice starts this instance's log from its start too.
	s.base, s.res.pos.Log, s.res.pos.File, s.byTime = base, base, crifile.Position{}, false
	s.opened(f)
	return nil
}

// atEnd waits at the end of the files for more, and notices when the
// container instance ended: a newer instance has a log (read it next), or
// the container finished or its pod went (the slice ends). Either way the
// file is read once more after the grace, for what the runtime wrote last.
func (s *fileSlice) atEnd(ctx context.Context) error {
	now := time.Now()
	if !s.endedAt.IsZero() && now.Sub(s.endedAt) >= s.grace() {
		s.endedAt = time.Time{}
		if err := s.next(); !errors.Is(err, capture.ErrLogNotFound) {
			return err
		}
		return errInstanceEnded
	}
	if s.endedAt.IsZero() && !now.Before(s.nextCheck) {
		s.nextCheck = now.Add(checkInterval)
		if s.ended(ctx) {
			s.endedAt = now
		}
	}
	if !s.endedAt.IsZero() {
		return sleep(ctx, s.grace())
	}
	if s.f.Rotated() {
		// The kubelet renamed the file: the follower moves on after the
		// grace, not on an event.
		return sleep(ctx, min(s.grace(), 100*time.Millisecond))
	}
	return s.wait.Wait(ctx) //nolint:wrapcheck // classified by the caller
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err() //nolint:wrapcheck // classified by the caller
	case <-t.C:
		return nil
	}
}

func (s *fileSlice) grace() time.Duration { return durationOr(s.p.deps.files.Grace, time.Second) }

// ended tells whether the instance being read writes no more.
func (s *fileSlice) ended(ctx context.Context) bool {
	cur, _ := crifile.ParseLogBase(s.base)
	if insts, err := crifile.Instances(s.dir); err == nil && len(insts) > 0 && insts[len(insts)-1] > cur {
		return true
	}
	return s.p.containerFinished(ctx, s.c)
}

// gone handles files that went while they were read: the kubelet removed
// the directory of a deleted pod.
func (s *fileSlice) gone(ctx context.Context) error {
	if s.p.containerFinished(ctx, s.c) {
		return errInstanceEnded
	}
	return fmt.Errorf("the log of %s went while it was read: %w", s.c.key, capture.ErrLogNotFound)
}

// lost counts bytes of the log the kubelet removed before they were read.
func (s *fileSlice) lost(n int64) {
	s.res.gap, s.res.gapFrom, s.res.gapBytes = true, s.res.pos.Last, s.res.gapBytes+n
}

// deliver hands one record to the pipeline, unless it was delivered before.
func (s *fileSlice) deliver(ctx context.Context, e crifile.Entry, fpos crifile.Position) error {
	p, c, res := s.p, s.c, s.res
	if s.byTime {
		if e.Time.Before(s.since) || s.skip.delivered(e.Time) {
			res.pos.Log, res.pos.File = s.base, fpos // skipped, not to be read again
			return nil
		}
	}
	if res.gap && res.replacedAt.IsZero() {
		res.replacedAt = e.Time
	}
	next := res.pos
	next.deliver(e.Time)
	next.Log, next.File = s.base, fpos
	r := &tracked{Record: capture.Record{Time: e.Time, Line: string(e.Line), Namespace: c.namespace, Pod: c.pod,
		Container: c.name, Node: c.node, Stream: e.Stream.String(), Labels: c.labels}, key: c.key, pos: next}
	n := len(e.Line)
	if e.Truncated > 0 {
		n += e.Truncated - len(capture.TruncatedMarker)
	}
	if err := p.handOver(ctx, r, res, n); err != nil {
		return err
	}
	if e.Truncated > 0 {
		p.stats.truncatedLines.Add(1)
	}
	return nil
}
