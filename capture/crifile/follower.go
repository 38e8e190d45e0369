package crifile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Options tune a Follower.
type Options struct {
	// MaxRecordBytes is the most of a record kept (1 MiB when zero).
	MaxRecordBytes int
	// Grace is how long a file the kubelet renamed is still read after the
	// new file appeared empty, for what the runtime wrote into the old one
	// until it reopened; 1s when zero.
	Grace time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Known are the files an earlier follower of the log knew (its
	// Known()), so that Open counts those the kubelet deleted meanwhile.
	Known []Known
}

// maxChunk bounds a line the follower buffers: the runtime writes at most
// 16 KiB of message per line; a longer line is not the runtime's and is
// skipped as malformed without being held.
const maxChunk = 64 << 10

// ErrNoLog is wrapped when a container's log has no file yet.
var ErrNoLog = errors.New("no log file")

// Follower reads one container instance's log (the file base, such as
// "0.log", in the container's directory) record by record, across the
// kubelet's rotations: a renamed file is read to its end, after the
// runtime's reopen, before the next one. One goroutine uses it; Close
// releases its one open file.
type Follower struct {
	dir, base string
	opts      Options
	m         *Merger
	cur       *openFile
	buf       []byte
	start     int
	// skipping is true while the rest of an over-long line is discarded.
	skipping bool
	// partialAt is where each stream's open partial record began.
	partialAt [2]int64
	// sawNewer is set at an end of cur once a newer file exists with data
	// (or the grace passed): the next end is cur's last.
	sawNewer bool
	// carry is the position in the previous file while a record begun
	// there (its P chunks) is completed in this one.
	carry *Position
	// known are the files of the log as last listed, in the kubelet's order.
	known []Known
	// Malformed counts lines that were not CRI lines, skipped.
	Malformed int
}

// Open starts reading the log at pos (the oldest file's start when pos is
// zero). Gap is what was lost since pos: the file it names was deleted or
// truncated before it was read to its end.
func Open(dir, base string, pos Position, o Options) (*Follower, Gap, error) {
	var (
		f   *Follower
		gap Gap
		err error
	)
	// A file listed may be renamed or gzipped before it is opened: list
	// again.
	for range 5 {
		f, gap, err = openFollower(dir, base, pos, o)
		if !errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrNoLog) {
			break
		}
	}
	return f, gap, err
}

// newFollower returns a follower with nothing open and o's defaults.
func newFollower(dir, base string, o Options) *Follower {
	if o.Grace <= 0 {
		o.Grace = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Follower{dir: dir, base: base, opts: o, m: NewMerger(o.MaxRecordBytes), known: slices.Clone(o.Known)}
}

// Known returns the files of the log as last listed, for the next
// follower's Options.
func (f *Follower) Known() []Known { return slices.Clone(f.known) }

// learn records a listed file's size.
func (f *Follower) learn(c candidate, id Identity, size int64) {
	if len(id.Head) == 0 {
		return // empty: nothing to lose, and no identity to keep
	}
	for i := range f.known {
		if f.known[i].File.matches(id, c.gz) {
			f.known[i] = Known{File: id, Order: c.order, Size: max(size, f.known[i].Size)}
			return
		}
	}
	f.known = append(f.known, Known{File: id, Order: c.order, Size: size})
	slices.SortStableFunc(f.known, func(a, b Known) int { return strings.Compare(a.Order, b.Order) })
	if len(f.known) > maxKnown {
		f.known = slices.Delete(f.known, 0, len(f.known)-maxKnown)
	}
}

// maxKnown bounds the files a follower remembers; the kubelet keeps five
// by default.
const maxKnown = 64

// lost is what of the log is gone from cands (as identified: ids): the
// rest of the file of pos (none when pos is zero), and every later file of
// prior (what an earlier follower knew) that went, which the kubelet
// deleted before it was read. The files that went are forgotten.
func (f *Follower) lost(prior []Known, cands []candidate, ids []Identity, pos Position) Gap {
	var gap Gap
	add := func(n int64) {
		if n > 0 {
			gap.Bytes += n
			gap.Files++
		}
	}
	present := func(id Identity) bool {
		for i, c := range cands {
			if id.matches(ids[i], c.gz) {
				return true
			}
		}
		return false
	}
	posPresent := !pos.IsZero() && present(pos.File)
	after, found := pos.IsZero(), false
	var gone []Identity
	for _, k := range prior {
		switch {
		case !after && (k.File.matches(pos.File, true) || pos.File.matches(k.File, true)): // by head: it may have been gzipped since
			after, found = true, true
			if !posPresent {
				add(max(k.Size, pos.Size) - pos.Offset)
				gone = append(gone, k.File)
			}
		case after && !present(k.File):
			add(k.Size)
			gone = append(gone, k.File)
		}
	}
	if !found && !pos.IsZero() && !posPresent {
		add(pos.Size - pos.Offset)
	}
	f.known = slices.DeleteFunc(f.known, func(k Known) bool { return slices.Contains(gone, k.File) })
	return gap
}

func openFollower(dir, base string, pos Position, o Options) (*Follower, Gap, error) {
	f := newFollower(dir, base, o)
	prior := f.Known()
	cands, err := candidates(dir, base)
	if err != nil {
		return nil, Gap{}, err
	}
	if len(cands) == 0 {
		// Every file went: what was not read of them is lost.
		return nil, f.lost(prior, nil, nil, pos), fmt.Errorf("%s in %s: %w", base, dir, ErrNoLog)
	}
	if pos.IsZero() {
		// The oldest file; a second listing catches one the first missed
		// while the kubelet renamed it.
		oldest := cands[0]
		if again, err := candidates(dir, base); err == nil && len(again) > 0 && again[0].order < oldest.order {
			oldest = again[0]
		}
		ids, _, err := f.identifyAll(cands)
		if err != nil {
			return nil, Gap{}, err
		}
		gap := f.lost(prior, cands, ids, pos)
		f.cur, err = open(oldest, 0)
		if err != nil {
			return nil, Gap{}, err
		}
		return f, gap, nil
	}
	var ids []Identity
	var sizes []int64
	// The kubelet renames the live file and the runtime creates a new one
	// under its name: a listing made just before that identifies the new
	// file under the old name, and the file of pos seems gone. It is only
	// gone if a second listing, made after the identification, agrees.
	for attempt := 0; ; attempt++ {
		if ids, sizes, err = f.identifyAll(cands); err != nil {
			return nil, Gap{}, err
		}
		if attempt == 1 || matchesAny(pos.File, cands, ids) {
			break
		}
		again, err := candidates(dir, base)
		if err != nil {
			return nil, Gap{}, err
		}
		if len(again) == 0 {
			break
		}
		cands = again
	}
	for i, c := range cands {
		id, size := ids[i], sizes[i]
		if !pos.File.matches(id, c.gz) {
			continue
		}
		if !c.gz && size < pos.Offset {
			// Truncated in place: what was after the offset is gone.
			if f.cur, err = openAs(c, 0, id); err != nil {
				return nil, Gap{}, err
			}
			return f, Gap{Bytes: max(0, pos.Size-pos.Offset), Files: 1, Moved: true}, nil
		}
		if f.cur, err = openAs(c, pos.Offset, id); err != nil {
			return nil, Gap{}, err
		}
		return f, Gap{}, nil
	}
	// The file is gone: continue with the first one written after it.
	gap := f.lost(prior, cands, ids, pos)
	gap.Moved = true
	next, want, err := f.after(cands, pos.File)
	if err != nil {
		return nil, gap, err
	}
	if next == nil {
		if slices.ContainsFunc(ids, func(id Identity) bool { return len(id.Head) == 0 }) {
			// A file with nothing in it yet (the runtime's new one) is
			// where the log goes on: not the end of the instance's log,
			// which would send its reader back to the oldest file. Ask
			// again (Open lists anew; the slice retries at pos), and count
			// what went then.
			return nil, Gap{}, fmt.Errorf("%s in %s: the file read last is not listed and none after it has data yet: %w", base, dir, os.ErrNotExist)
		}
		return nil, gap, fmt.Errorf("%s in %s: %w", base, dir, ErrNoLog)
	}
	if f.cur, err = openAs(*next, 0, want); err != nil {
		return nil, gap, err
	}
	return f, gap, nil
}

// matchesAny tells whether one of the listed files is id's.
func matchesAny(id Identity, cands []candidate, ids []Identity) bool {
	for i, c := range cands {
		if id.matches(ids[i], c.gz) {
			return true
		}
	}
	return false
}

// after returns the first candidate written after the file of id: the one
// following it in order when it is still there, else the first whose first
// line is later than its first line.
func (f *Follower) after(cands []candidate, id Identity) (*candidate, Identity, error) {
	ids, _, err := f.identifyAll(cands)
	if err != nil {
		return nil, Identity{}, err
	}
	for i, c := range cands {
		if id.matches(ids[i], c.gz) {
			if i+1 < len(cands) {
				return &cands[i+1], ids[i+1], nil
			}
			return nil, Identity{}, nil
		}
	}
	t := headTime(id.Head)
	for i := range cands {
		if ct := headTime(ids[i].Head); len(ids[i].Head) > 0 && (t.IsZero() || ct.After(t)) {
			return &cands[i], ids[i], nil
		}
	}
	// None written later: the file itself, truncated in place and written
	// anew from the same time on, is read from its start.
	for i, c := range cands {
		if !c.gz && len(ids[i].Head) > 0 && ids[i].Dev == id.Dev && ids[i].Ino == id.Ino {
			return &cands[i], ids[i], nil
		}
	}
	return nil, Identity{}, nil
}

// identifyAll identifies the listed files (an empty identity for one that
// went meanwhile) and learns their sizes.
func (f *Follower) identifyAll(cands []candidate) ([]Identity, []int64, error) {
	ids := make([]Identity, len(cands))
	sizes := make([]int64, len(cands))
	for i, c := range cands {
		id, size, err := identify(c.path, c.gz)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, nil, err
		}
		ids[i], sizes[i] = id, size
		f.learn(c, id, size)
	}
	return ids, sizes, nil
}

// Next returns the next whole record and the position after it (where a
// restart resumes so as not to read it again). io.EOF means no whole
// record is there yet: call again when the file may have grown.
func (f *Follower) Next() (Entry, Position, error) {
	for {
		if line, ok := f.line(); ok {
			lineStart := f.cur.offset
			f.cur.offset += int64(len(line)) + 1
			if f.skipping {
				f.skipping = false
				f.Malformed++
				continue
			}
			stdoutOpen, stderrOpen := f.m.streams[Stdout].open, f.m.streams[Stderr].open
			e, done, err := f.m.Add(line)
			if err != nil {
				f.Malformed++
				continue
			}
			if !done {
				if (e.Stream == Stdout && !stdoutOpen) || (e.Stream == Stderr && !stderrOpen) {
					f.partialAt[e.Stream] = lineStart
				}
				continue
			}
			return e, f.position(), nil
		}
		n, err := f.fill()
		if n > 0 {
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return Entry{}, Position{}, fmt.Errorf("reading %s: %w", f.cur.c.path, err)
		}
		again, err := f.atEnd()
		if err != nil {
			return Entry{}, Position{}, err
		}
		if !again {
			return Entry{}, Position{}, io.EOF
		}
	}
}

// Position is where a restart resumes now: after the last record Next
// returned, or where Open placed the follower (after a gap, the start of
// the file it went on with).
func (f *Follower) Position() Position { return f.position() }

// position is where a restart resumes: after the last whole record, or
// at the start of a record still being merged.
func (f *Follower) position() Position {
	if f.carry != nil {
		if f.m.Open() {
			return *f.carry
		}
		f.carry = nil
	}
	off := f.cur.offset
	for s := range f.m.streams {
		if f.m.streams[s].open {
			off = min(off, f.partialAt[s])
		}
	}
	return Position{File: f.cur.id, Offset: off, Size: f.cur.offset + int64(len(f.buf)-f.start)}
}

// line returns the next buffered line without its newline.
func (f *Follower) line() ([]byte, bool) {
	rest := f.buf[f.start:]
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		if len(rest) > maxChunk {
			// Not the runtime's: drop what is buffered, and the rest of the
			// line as it comes.
			f.cur.offset += int64(len(rest))
			f.buf, f.start, f.skipping = f.buf[:0], 0, true
		}
		return nil, false
	}
	f.start += i + 1
	return rest[:i], true
}

// fill reads more of the current file into the buffer.
func (f *Follower) fill() (int, error) {
	if f.start > 0 {
		n := copy(f.buf, f.buf[f.start:])
		f.buf, f.start = f.buf[:n], 0
	}
	if cap(f.buf)-len(f.buf) < 32<<10 {
		f.buf = append(f.buf, make([]byte, 64<<10)...)[:len(f.buf)]
	}
	n, err := f.cur.r.Read(f.buf[len(f.buf):cap(f.buf)])
	f.buf = f.buf[:len(f.buf)+n]
	if n > 0 && len(f.cur.id.Head) < HeadSize && !f.cur.c.gz {
		// Opened short (or empty): its identity gains the head it has now.
		if id, _, ierr := identifyFile(f.cur.f, false); ierr == nil && id.Ino == f.cur.id.Ino {
			f.cur.id = id
		}
	}
	return n, err //nolint:wrapcheck // Next names the file
}

// atEnd decides, at the end of the current file, whether it is done (the
// kubelet renamed it and the runtime writes elsewhere): then it moves to the
// next file. again is true when Next should read on.
func (f *Follower) atEnd() (again bool, err error) {
	livePath := filepath.Join(f.dir, f.base)
	if f.cur.rotatedAt.IsZero() && sameFile(livePath, f.cur.id) {
		return false, nil // still the live file: one stat, no read
	}
	live, _, err := identify(livePath, false)
	switch {
	case err == nil && live.Dev == f.cur.id.Dev && live.Ino == f.cur.id.Ino:
		return false, nil // still the live file
	case err != nil && !os.IsNotExist(err):
		return false, err
	}
	now := f.opts.Now()
	if f.cur.rotatedAt.IsZero() {
		f.cur.rotatedAt = now
	}
	if !f.sawNewer {
		// What the runtime wrote into the renamed file until it reopened is
		// there once the new file has data, or surely after the grace: read
		// to the end once more after that.
		if (err == nil && len(live.Head) > 0) || now.Sub(f.cur.rotatedAt) >= f.opts.Grace {
			f.sawNewer = true
			return true, nil // not switched yet; Next reads again
		}
		return false, nil
	}
	cands, err := candidates(f.dir, f.base)
	if err != nil {
		return false, err
	}
	next, want, err := f.after(cands, f.cur.id)
	if err != nil || next == nil {
		return false, err
	}
	if len(f.buf) > f.start {
		// A last line without its newline: the runtime never writes one.
		f.Malformed++
	}
	o, err := openAs(*next, 0, want)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil // renamed or gzipped meanwhile: look again
	}
	if err != nil {
		return false, err
	}
	// A listing that raced with a rename may have missed a file: the
	// choice stands only if a listing made after it agrees.
	if again, err := candidates(f.dir, f.base); err == nil {
		if next2, want2, err := f.after(again, f.cur.id); err != nil || next2 == nil || !o.id.matches(want2, next2.gz) {
			_ = o.close()
			return true, nil
		}
	}
	if f.m.Open() && f.carry == nil {
		// A record's P chunks end this file and its F begins the next one:
		// until it is whole, a restart goes back to its start here.
		p := f.position()
		f.carry = &p
	}
	_ = f.cur.close()
	f.cur, f.buf, f.start, f.sawNewer, f.skipping = o, f.buf[:0], 0, false, false
	return true, nil
}

// Rotated reports whether the file being read is no longer the live one
// (the kubelet renamed it): it is to be read to its end before the kubelet
// deletes it.
func (f *Follower) Rotated() bool { return !f.cur.c.live || !f.cur.rotatedAt.IsZero() }

// Close releases the open file.
func (f *Follower) Close() error {
	if err := f.cur.close(); err != nil {
		return fmt.Errorf("closing %s: %w", f.cur.c.path, err)
	}
	return nil
}
