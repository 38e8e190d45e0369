package crifile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	// Malformed counts lines that were not CRI lines, skipped.
	Malformed int
}

// Open starts reading the log at pos (the oldest file's start when pos is
// zero). Gap is what was lost since pos: the file it names was deleted or
// truncated before it was read to its end.
func Open(dir, base string, pos Position, o Options) (*Follower, Gap, error) {
	if o.Grace <= 0 {
		o.Grace = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
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

func openFollower(dir, base string, pos Position, o Options) (*Follower, Gap, error) {
	f := &Follower{dir: dir, base: base, opts: o, m: NewMerger(o.MaxRecordBytes)}
	cands, err := candidates(dir, base)
	if err != nil {
		return nil, Gap{}, err
	}
	if len(cands) == 0 {
		return nil, Gap{}, fmt.Errorf("%s in %s: %w", base, dir, ErrNoLog)
	}
	if pos.IsZero() {
		// The oldest file; a second listing catches one the first missed
		// while the kubelet renamed it.
		oldest := cands[0]
		if again, err := candidates(dir, base); err == nil && len(again) > 0 && again[0].order < oldest.order {
			oldest = again[0]
		}
		f.cur, err = open(oldest, 0)
		if err != nil {
			return nil, Gap{}, err
		}
		return f, Gap{}, nil
	}
	for _, c := range cands {
		id, size, err := identify(c.path, c.gz)
		if err != nil {
			if os.IsNotExist(err) {
				continue // rotated away while listed
			}
			return nil, Gap{}, err
		}
		if !pos.File.matches(id, c.gz) {
			continue
		}
		if !c.gz && size < pos.Offset {
			// Truncated in place: what was after the offset is gone.
			if f.cur, err = openAs(c, 0, id); err != nil {
				return nil, Gap{}, err
			}
			return f, Gap{Bytes: max(0, pos.Size-pos.Offset)}, nil
		}
		if f.cur, err = openAs(c, pos.Offset, id); err != nil {
			return nil, Gap{}, err
		}
		return f, Gap{}, nil
	}
	// The file is gone: continue with the first one written after it.
	gap := Gap{Bytes: max(0, pos.Size-pos.Offset)}
	next, want, err := f.after(cands, pos.File)
	if err != nil {
		return nil, gap, err
	}
	if next == nil {
		return nil, gap, fmt.Errorf("%s in %s: %w", base, dir, ErrNoLog)
	}
	if f.cur, err = openAs(*next, 0, want); err != nil {
		return nil, gap, err
	}
	return f, gap, nil
}

// after returns the first candidate written after the file of id: the one
// following it in order when it is still there, else the first whose first
// line is later than its first line.
func (f *Follower) after(cands []candidate, id Identity) (*candidate, Identity, error) {
	ids := make([]Identity, len(cands))
	for i, c := range cands {
		cid, _, err := identify(c.path, c.gz)
		if err != nil && !os.IsNotExist(err) {
			return nil, Identity{}, err
		}
		ids[i] = cid // empty when it went meanwhile
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
	return nil, Identity{}, nil
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
	live, _, ierr := identify(filepath.Join(f.dir, f.base), false)
	err = ierr
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

// Close releases the open file.
func (f *Follower) Close() error {
	if err := f.cur.close(); err != nil {
		return fmt.Errorf("closing %s: %w", f.cur.c.path, err)
	}
	return nil
}
