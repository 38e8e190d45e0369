// Package crifiletest simulates what the container runtime and the kubelet
// do to a container's CRI log files, for tests of readers of those files:
// the runtime writes CRI lines (messages over 16 KiB as P chunks) to its
// open file, and the kubelet's rotation gzips the older rotated files,
// deletes those beyond its maximum, renames the live file and has the
// runtime reopen. It is imported only by tests.
package crifiletest

import (
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// T is what the simulator needs of a test: testing.TB and Ginkgo's
// GinkgoT() both have it.
type T interface {
	Helper()
	Error(args ...any)
	Fatal(args ...any)
	Cleanup(f func())
}

// HugeRecord is the size of Message's largest records: the engine's
// default line cap, so that they arrive whole.
const HugeRecord = 1 << 20

// Chunk is the most of a message the runtime writes in one CRI line.
const Chunk = 16 << 10

// Kubelet writes and rotates one container instance's log, Dir/Base.
type Kubelet struct {
	Dir  string
	Base string
	// MaxFiles is the kubelet's containerLogMaxFiles.
	MaxFiles int

	t  T
	mu sync.Mutex
	f  *os.File
	// clock is the last timestamp written; with realTime it follows the
	// wall clock, strictly increasing.
	clock    time.Time
	realTime bool
	rotated  int
	written  int64
}

// Synthetic is the first timestamp of a Kubelet with a synthetic clock.
var Synthetic = time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)

// New starts the log base (such as "0.log") in dir, creating dir. With
// realTime the lines carry the wall clock's time (strictly increasing),
// else a synthetic clock from Synthetic on, one microsecond per line.
func New(t T, dir, base string, maxFiles int, realTime bool) *Kubelet {
	t.Helper()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	k := &Kubelet{t: t, Dir: dir, Base: base, MaxFiles: maxFiles, realTime: realTime, clock: Synthetic}
	if realTime {
		k.clock = time.Now().UTC()
	}
	k.Reopen()
	t.Cleanup(k.Close)
	return k
}

// Reopen has the runtime open the live path anew (after a rename, or to
// create a file removed behind its back).
func (k *Kubelet) Reopen() {
	f, err := os.OpenFile(filepath.Join(k.Dir, k.Base), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		k.t.Error(err)
		return
	}
	if k.f != nil {
		_ = k.f.Close()
	}
	k.f = f
}

// Close closes the runtime's file: the container instance ended.
func (k *Kubelet) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.f != nil {
		_ = k.f.Close()
		k.f = nil
	}
}

// SetClock sets the timestamp the next line is written after.
func (k *Kubelet) SetClock(t time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.clock = t
}

func (k *Kubelet) tick() time.Time {
	next := k.clock.Add(time.Microsecond)
	if k.realTime {
		if now := time.Now().UTC(); now.After(next) {
			next = now
		}
	}
	k.clock = next
	return next
}

// Write writes one record of the stream ("stdout" or "stderr") as the
// runtime does and returns the bytes written.
func (k *Kubelet) Write(stream, msg string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	var b strings.Builder
	for {
		tag, part := "F", msg
		if len(msg) > Chunk {
			tag, part = "P", msg[:Chunk]
		}
		fmt.Fprintf(&b, "%s %s %s %s\n", k.tick().Format(time.RFC3339Nano), stream, tag, part)
		msg = msg[len(part):]
		if tag == "F" {
			break
		}
	}
	if _, err := k.f.WriteString(b.String()); err != nil {
		k.t.Error(err)
	}
	k.written += int64(b.Len())
	return b.Len()
}

// Size is how many bytes were written to the live file since the last
// rotation (and before it, in all).
func (k *Kubelet) Size() int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	st, err := k.f.Stat()
	if err != nil {
		return 0
	}
	return st.Size()
}

// Rotations is how many times Rotate ran.
func (k *Kubelet) Rotations() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.rotated
}

// Rotate is the kubelet's rotation of the log: every rotated file but the
// newest is gzipped, those beyond MaxFiles (the live file and the one
// about to be rotated count) deleted, the live file renamed with the
// kubelet's time suffix, and the runtime reopens. It returns the bytes of
// the files it deleted.
func (k *Kubelet) Rotate() (deleted int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	rotated := k.rotatedFiles()
	for i, p := range rotated {
		if i == len(rotated)-1 || strings.HasSuffix(p, ".gz") {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			k.t.Error(err)
		}
		out, err := os.Create(p + ".tmp")
		if err != nil {
			k.t.Error(err)
		}
		zw := gzip.NewWriter(out)
		_, _ = zw.Write(b)
		_ = zw.Close()
		_ = out.Close()
		if err := os.Rename(p+".tmp", p+".gz"); err != nil {
			k.t.Error(err)
		}
		_ = os.Remove(p)
	}
	rotated = k.rotatedFiles()
	for len(rotated) > max(0, k.MaxFiles-2) {
		deleted += contentSize(rotated[0])
		_ = os.Remove(rotated[0])
		rotated = rotated[1:]
	}
	k.rotated++
	suffix := Synthetic.Add(time.Duration(k.rotated) * time.Second).Format("20060102-150405")
	if err := os.Rename(filepath.Join(k.Dir, k.Base), filepath.Join(k.Dir, k.Base+"."+suffix)); err != nil {
		k.t.Error(err)
	}
	k.Reopen()
	return deleted
}

// contentSize is the uncompressed size of a log file.
func contentSize(path string) int64 {
	if !strings.HasSuffix(path, ".gz") {
		st, err := os.Stat(path)
		if err != nil {
			return 0
		}
		return st.Size()
	}
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return 0
	}
	var n int64
	buf := make([]byte, 64<<10)
	for {
		m, err := zr.Read(buf)
		n += int64(m)
		if err != nil {
			return n
		}
	}
}

// RotatedFiles lists the rotated files, oldest first.
func (k *Kubelet) RotatedFiles() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.rotatedFiles()
}

func (k *Kubelet) rotatedFiles() []string {
	files, _ := filepath.Glob(filepath.Join(k.Dir, k.Base+".*"))
	var out []string
	for _, f := range files {
		if !strings.HasSuffix(f, ".tmp") {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}

// Message is record n of a stream: mostly short, every 50th longer than
// two chunks, every 10,000th exactly HugeRecord bytes, with trailing
// whitespace and invalid UTF-8 now and then.
func Message(stream string, n int) string {
	base := fmt.Sprintf("%s seq=%d", stream, n)
	switch {
	case n%10000 == 9999:
		return base + " " + strings.Repeat("H", HugeRecord-len(base)-1)
	case n%50 == 49:
		return base + " " + strings.Repeat("L", 2*Chunk+n%977) + " end"
	case n%7 == 3:
		return base + " \xff\xfe trailing  \t "
	}
	return base + " " + strings.Repeat("x", n%200)
}

// Seq is the sequence number of a Message, -1 when it is not one.
func Seq(msg string) int {
	_, rest, ok := strings.Cut(msg, " seq=")
	if !ok {
		return -1
	}
	n := 0
	i := 0
	for ; i < len(rest) && rest[i] >= '0' && rest[i] <= '9'; i++ {
		n = 10*n + int(rest[i]-'0')
	}
	if i == 0 {
		return -1
	}
	return n
}
