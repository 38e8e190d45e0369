package crifile

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// HeadSize is how many of a file's first bytes its Identity keeps: the
// first line's timestamp and more, so that a reused inode is told apart.
const HeadSize = 128

// Identity tells one log file from another: its device and inode, and its
// first bytes (the inode of a deleted file may be reused for another).
// A gzipped rotated file has another inode; it is recognised by its
// content's first bytes alone.
type Identity struct {
	Dev  uint64 `json:"dev"`
	Ino  uint64 `json:"ino"`
	Head string `json:"head"`
}

// matches reports whether o, a later look at a file, is the file id
// identified: its head extends id's (a file identified before it had
// HeadSize bytes has a shorter head, an empty one if it was empty), and for
// a plain file the device and inode are the same; a gzipped file is
// recognised by its head. A file now shorter than what id saw of it is
// another file on a reused inode, or the same truncated: either way, not
// the content id named.
func (id Identity) matches(o Identity, gz bool) bool {
	if len(o.Head) < len(id.Head) || id.Head != o.Head[:len(id.Head)] {
		return false
	}
	if gz {
		return len(id.Head) > 0
	}
	return id.Dev == o.Dev && id.Ino == o.Ino && (id.Ino != 0 || len(id.Head) > 0)
}

// Position is where a container's log is read up to: the file, the offset
// in its content (uncompressed) where the next record starts, and the
// file's size when last seen, so that a loss can be counted.
type Position struct {
	File   Identity `json:"file"`
	Offset int64    `json:"offset"`
	Size   int64    `json:"size"`
}

// IsZero reports whether p is no position at all (read from the start).
func (p Position) IsZero() bool { return len(p.File.Head) == 0 && p.File.Ino == 0 }

// Gap is what was gone when a follower resumed: the bytes of the file it
// had not finished (the kubelet deleted it beyond containerLogMaxFiles, or
// it was truncated) and of the later files it knew that went too, as far
// as they are known; Files is how many files those were.
type Gap struct {
	Bytes int64
	Files int
	// Moved is set when the file of the position was gone (or truncated)
	// and the follower went on with another one: its Position is where a
	// later follower starts, even before it returns a record.
	Moved bool
}

// candidate is one file of a container's log.
type candidate struct {
	path string
	gz   bool
	live bool
	// order sorts rotated files (by the kubelet's suffix) before the live one.
	order string
}

// candidates lists the files of the log base (such as "0.log") in dir,
// oldest first: base.<YYYYMMDD-hhmmss>[.gz] as the kubelet renames them,
// then base itself.
func candidates(dir, base string) ([]candidate, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	var out []candidate
	for _, e := range ents {
		name := e.Name()
		switch {
		case name == base:
			out = append(out, candidate{path: filepath.Join(dir, name), live: true, order: "~"})
		case strings.HasPrefix(name, base+"."):
			suffix := strings.TrimPrefix(name, base+".")
			gz := strings.HasSuffix(suffix, ".gz")
			suffix = strings.TrimSuffix(suffix, ".gz")
			if strings.HasSuffix(suffix, ".tmp") || suffix == "" {
				continue // the kubelet's gzip in progress
			}
			out = append(out, candidate{path: filepath.Join(dir, name), gz: gz, order: suffix})
		}
	}
	slices.SortFunc(out, func(a, b candidate) int { return strings.Compare(a.order, b.order) })
	return out, nil
}

// openFile is the file a follower reads.
type openFile struct {
	c      candidate
	f      *os.File
	r      io.Reader // f, or a gzip reader over it
	id     Identity
	offset int64
	// rotatedAt is when the follower saw the live path name another file.
	rotatedAt time.Time
}

func (o *openFile) close() error {
	if o == nil || o.f == nil {
		return nil
	}
	err := o.f.Close()
	o.f = nil
	return err //nolint:wrapcheck // the caller names the file
}

// identify reads the identity of the file at path.
func identify(path string, gz bool) (Identity, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return Identity{}, 0, err //nolint:wrapcheck // callers test os.IsNotExist
	}
	defer f.Close()
	return identifyFile(f, gz)
}

// identifyFile reads the identity of an open file without moving its offset.
func identifyFile(f *os.File, gz bool) (Identity, int64, error) {
	st, err := f.Stat()
	if err != nil {
		return Identity{}, 0, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	id := Identity{}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		id.Dev, id.Ino = uint64(sys.Dev), sys.Ino //nolint:unconvert // Dev's type differs by platform
	}
	var r io.Reader = io.NewSectionReader(f, 0, st.Size())
	if gz {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return Identity{}, 0, fmt.Errorf("reading %s: %w", f.Name(), err)
		}
		defer zr.Close()
		r = zr
	}
	head := make([]byte, HeadSize)
	n, err := io.ReadFull(r, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return Identity{}, 0, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	id.Head = string(head[:n])
	if gz {
		return id, gzipSize(f, st.Size()), nil
	}
	return id, st.Size(), nil
}

// gzipSize is the uncompressed size of a gzip file of size n, from its
// trailer (modulo 4 GiB; the kubelet's files are far smaller).
func gzipSize(f *os.File, n int64) int64 {
	var b [4]byte
	if n < 18 {
		return 0
	}
	if _, err := f.ReadAt(b[:], n-4); err != nil {
		return 0
	}
	return int64(b[0]) | int64(b[1])<<8 | int64(b[2])<<16 | int64(b[3])<<24
}

// Known is a file of a container's log as it was last listed: its identity,
// its place in the kubelet's order and its content's size then. A follower
// reopened with the files an earlier one knew counts what the kubelet
// deleted of them before they were read.
type Known struct {
	File  Identity
	Order string
	Size  int64
}

// sameFile reports whether path names the file of id (device and inode),
// with one stat and no read.
func sameFile(path string, id Identity) bool {
	st, err := os.Stat(path)
	if err != nil {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && uint64(sys.Dev) == id.Dev && sys.Ino == id.Ino //nolint:unconvert // Dev's type differs by platform
}

// open opens c at offset (of its content).
func open(c candidate, offset int64) (*openFile, error) {
	f, err := os.Open(c.path)
	if err != nil {
		return nil, err //nolint:wrapcheck // callers test os.IsNotExist
	}
	o := &openFile{c: c, f: f, r: f, offset: offset}
	if o.id, _, err = identifyFile(f, c.gz); err != nil {
		_ = f.Close()
		return nil, err
	}
	if !c.live {
		// Renamed already: the runtime's last write into it was at its
		// modification time at the latest, which starts the grace.
		if st, err := f.Stat(); err == nil {
			o.rotatedAt = st.ModTime()
		}
	}
	if c.gz {
		zr, err := gzip.NewReader(f)
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("reading %s: %w", c.path, err)
		}
		if _, err := io.CopyN(io.Discard, zr, offset); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("skipping to %d in %s: %w", offset, c.path, err)
		}
		o.r = zr
		return o, nil
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("seeking to %d in %s: %w", offset, c.path, err)
	}
	return o, nil
}

// openAs opens c at offset if it is still the file of identity want: a
// path may name another file by the time it is opened (the kubelet renamed
// the live file meanwhile). Another file is reported as os.ErrNotExist, so
// that the caller lists the files again.
func openAs(c candidate, offset int64, want Identity) (*openFile, error) {
	o, err := open(c, offset)
	if err != nil {
		return nil, err
	}
	if !want.matches(o.id, c.gz) {
		_ = o.close()
		return nil, fmt.Errorf("%s changed while it was opened: %w", c.path, os.ErrNotExist)
	}
	return o, nil
}

// headTime is the time of a head's first line, zero when it has none.
func headTime(head string) time.Time {
	sp := strings.IndexByte(head, ' ')
	if sp <= 0 {
		return time.Time{}
	}
	t, _ := parseTime([]byte(head[:sp]))
	return t
}

// Unread is how many bytes of the log base in dir come after pos, as the
// kubelet has them now: the rest of the file pos is in and every newer
// file, a gzipped one by its uncompressed size. It is what a follower at
// pos has still to read. A position in none of the files left (or no
// position) counts every file. Newest first, it stats the files until it
// finds pos's; only a gzipped file is opened, to read its head.
func Unread(dir, base string, pos Position) (int64, error) {
	cands, err := candidates(dir, base)
	if err != nil {
		return 0, err
	}
	var total int64
	for i := len(cands) - 1; i >= 0; i-- {
		c := cands[i]
		var (
			size  int64
			found bool
		)
		if c.gz {
			id, n, err := identify(c.path, true)
			if err != nil {
				continue // gzipped or deleted meanwhile
			}
			size, found = n, !pos.IsZero() && pos.File.matches(id, true)
		} else {
			st, err := os.Stat(c.path)
			if err != nil {
				continue
			}
			size = st.Size()
			if sys, ok := st.Sys().(*syscall.Stat_t); ok && !pos.IsZero() {
				found = uint64(sys.Dev) == pos.File.Dev && sys.Ino == pos.File.Ino && size >= int64(len(pos.File.Head)) //nolint:unconvert // Dev's type differs by platform
			}
		}
		if found {
			return total + max(size-pos.Offset, 0), nil
		}
		total += size
	}
	return total, nil
}
