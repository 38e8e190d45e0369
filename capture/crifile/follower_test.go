package crifile_test

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/log-capturer/log-capturer/capture/crifile"
)

// kubelet does to one container's log what the runtime and the kubelet do:
// the runtime writes CRI lines to its open file (messages over 16 KiB as P
// chunks), and a rotation gzips the older rotated files, deletes those
// beyond maxFiles, renames the live file and has the runtime reopen.
type kubelet struct {
	t        *testing.T
	dir      string
	maxFiles int

	mu      sync.Mutex
	f       *os.File
	clock   time.Time
	rotated int
}

const chunk = 16 << 10

func newKubelet(t *testing.T, maxFiles int) *kubelet {
	t.Helper()
	k := &kubelet{t: t, dir: t.TempDir(), maxFiles: maxFiles, clock: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)}
	k.reopen()
	t.Cleanup(func() { _ = k.f.Close() })
	return k
}

func (k *kubelet) reopen() {
	f, err := os.OpenFile(filepath.Join(k.dir, "0.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		k.t.Error(err)
		return
	}
	if k.f != nil {
		_ = k.f.Close()
	}
	k.f = f
}

// write writes one record of the stream as the runtime does and returns
// the bytes written.
func (k *kubelet) write(stream, msg string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	var b strings.Builder
	for {
		k.clock = k.clock.Add(time.Microsecond)
		tag, part := "F", msg
		if len(msg) > chunk {
			tag, part = "P", msg[:chunk]
		}
		fmt.Fprintf(&b, "%s %s %s %s\n", k.clock.Format(time.RFC3339Nano), stream, tag, part)
		msg = msg[len(part):]
		if tag == "F" {
			break
		}
	}
	if _, err := k.f.WriteString(b.String()); err != nil {
		k.t.Error(err)
	}
	return b.Len()
}

// rotate is the kubelet's rotation of the container's log.
func (k *kubelet) rotate() {
	k.mu.Lock()
	defer k.mu.Unlock()
	rotated := k.rotatedFiles()
	// Compress every rotated file but the newest.
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
	// Delete beyond maxFiles: the live file and the one about to be
	// rotated count, as the kubelet counts them.
	rotated = k.rotatedFiles()
	for len(rotated) > max(0, k.maxFiles-2) {
		_ = os.Remove(rotated[0])
		rotated = rotated[1:]
	}
	k.rotated++
	suffix := time.Date(2026, 12, 2, 0, 0, k.rotated, 0, time.UTC).Format("20060102-150405")
	if err := os.Rename(filepath.Join(k.dir, "0.log"), filepath.Join(k.dir, "0.log."+suffix)); err != nil {
		k.t.Error(err)
	}
	k.reopen()
}

func (k *kubelet) rotatedFiles() []string {
	files, _ := filepath.Glob(filepath.Join(k.dir, "0.log.*"))
	var out []string
	for _, f := range files {
		if !strings.HasSuffix(f, ".tmp") {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}

// message is record n of a stream: mostly short, every 50th longer than
// two chunks, with trailing whitespace and invalid UTF-8 now and then.
func message(stream string, n int) string {
	base := fmt.Sprintf("%s seq=%d", stream, n)
	switch {
	case n%50 == 49:
		return base + " " + strings.Repeat("L", 2*chunk+n%977) + " end"
	case n%7 == 3:
		return base + " \xff\xfe trailing  \t "
	}
	return base + " " + strings.Repeat("x", n%200)
}

// reader drains a follower, checking every record against what was
// written, and returns the last position read.
type reader struct {
	t    *testing.T
	next map[crifile.Stream]int
}

func (r *reader) drain(f *crifile.Follower, until func() bool) crifile.Position {
	r.t.Helper()
	var pos crifile.Position
	for {
		e, p, err := f.Next()
		if errors.Is(err, io.EOF) {
			if until() {
				return pos
			}
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			r.t.Fatal(err)
		}
		r.check(e)
		pos = p
	}
}

func (r *reader) check(e crifile.Entry) {
	r.t.Helper()
	n := r.next[e.Stream]
	if want := message(e.Stream.String(), n); string(e.Line) != want {
		r.t.Fatalf("%s record %d: got %d bytes %.60q, want %d bytes %.60q", e.Stream, n, len(e.Line), e.Line, len(want), want)
	}
	r.next[e.Stream] = n + 1
}

func streamOf(n int) string {
	if n%5 == 4 {
		return "stderr"
	}
	return "stdout"
}

// TestFollowsAcrossRotations: a reader following the log while it is
// written and rotated every 300 records gets every record once, in order,
// byte for byte (P/F merges across 16 KiB chunks, whitespace, invalid
// UTF-8), also when a record's chunks straddle a rotation.
func TestFollowsAcrossRotations(t *testing.T) {
	k := newKubelet(t, 20) // the writer may outrun the reader: keep every file
	const total = 3000
	counts := map[string]int{}
	done := make(chan struct{})
	defer func() { <-done }() // the writer ends before the test does
	go func() {
		defer close(done)
		for i := range total {
			s := streamOf(i)
			k.write(s, message(s, counts[s]))
			counts[s]++
			if i%300 == 299 {
				k.rotate()
			}
		}
	}()
	f, gap, err := crifile.Open(k.dir, "0.log", crifile.Position{}, crifile.Options{Grace: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if gap.Bytes != 0 {
		t.Fatalf("gap %d at the start", gap.Bytes)
	}
	r := &reader{t: t, next: map[crifile.Stream]int{}}
	deadline := time.Now().Add(20 * time.Second)
	r.drain(f, func() bool {
		select {
		case <-done:
			return r.next[crifile.Stdout]+r.next[crifile.Stderr] == total || time.Now().After(deadline)
		default:
			return false
		}
	})
	if got := r.next[crifile.Stdout] + r.next[crifile.Stderr]; got != total || f.Malformed != 0 {
		t.Fatalf("%d records of %d read, %d malformed lines", got, total, f.Malformed)
	}
	if k.rotated != total/300 {
		t.Fatalf("%d rotations", k.rotated)
	}
}

// TestResumesInsideGzippedFiles: a reader stopped while three rotations
// happen resumes at its position, now inside a gzipped file, and reads on
// into the newer files: nothing lost, nothing twice.
func TestResumesInsideGzippedFiles(t *testing.T) {
	k := newKubelet(t, 10)
	counts := map[string]int{}
	write := func(n int) {
		for range n {
			i := counts["stdout"] + counts["stderr"]
			s := streamOf(i)
			k.write(s, message(s, counts[s]))
			counts[s]++
		}
	}
	write(500)
	f, _, err := crifile.Open(k.dir, "0.log", crifile.Position{}, crifile.Options{Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := &reader{t: t, next: map[crifile.Stream]int{}}
	var pos crifile.Position
	for range 200 {
		e, p, err := f.Next()
		if err != nil {
			t.Fatal(err)
		}
		r.check(e)
		pos = p
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		k.rotate()
		write(400)
	}
	if gz, _ := filepath.Glob(filepath.Join(k.dir, "0.log.20261202-000001*")); len(gz) != 1 || !strings.HasSuffix(gz[0], ".gz") {
		t.Fatalf("the first file is %v, want it gzipped", gz)
	}
	f, gap, err := crifile.Open(k.dir, "0.log", pos, crifile.Options{Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if gap.Bytes != 0 {
		t.Fatalf("gap of %d bytes, want none", gap.Bytes)
	}
	total := counts["stdout"] + counts["stderr"]
	r.drain(f, func() bool { return r.next[crifile.Stdout]+r.next[crifile.Stderr] == total })
	if e, _, err := f.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("a record after the last: %+v %v", e, err)
	}
}

// TestCountsWhatTheKubeletDeleted: a reader stopped too long finds its file
// deleted (beyond containerLogMaxFiles); it counts the bytes it had not
// delivered from it as the gap, exactly, and goes on with the first newer
// file.
func TestCountsWhatTheKubeletDeleted(t *testing.T) {
	k := newKubelet(t, 2) // the live file and one rotated one
	written := 0
	counts := map[string]int{}
	write := func(n int) int {
		b := 0
		for range n {
			i := counts["stdout"] + counts["stderr"]
			s := streamOf(i)
			b += k.write(s, message(s, counts[s]))
			counts[s]++
		}
		return b
	}
	written += write(40) // well under one read buffer (the reader sees all of it)
	f, _, err := crifile.Open(k.dir, "0.log", crifile.Position{}, crifile.Options{Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var pos crifile.Position
	for range 25 {
		_, p, err := f.Next()
		if err != nil {
			t.Fatal(err)
		}
		pos = p
	}
	_ = f.Close()
	lost := int64(written) - pos.Offset
	k.rotate()
	write(10)
	k.rotate() // deletes the first file: only one rotated file is kept
	write(10)
	f, gap, err := crifile.Open(k.dir, "0.log", pos, crifile.Options{Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if gap.Bytes != lost {
		t.Fatalf("gap of %d bytes, want %d (the 15 records not delivered)", gap.Bytes, lost)
	}
	e, _, err := f.Next()
	if err != nil || !strings.HasPrefix(string(e.Line), "stdout seq=32 ") {
		t.Fatalf("after the gap: %.40q %v, want the first record of the second file", e.Line, err)
	}
}

// TestTruncatedInPlace: a file truncated under the reader (copytruncate) is
// read again from its start, and what was after the position is counted.
func TestTruncatedInPlace(t *testing.T) {
	k := newKubelet(t, 5)
	for i := range 20 {
		k.write("stdout", message("stdout", i))
	}
	f, _, err := crifile.Open(k.dir, "0.log", crifile.Position{}, crifile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var pos crifile.Position
	for range 10 {
		_, pos, err = f.Next()
		if err != nil {
			t.Fatal(err)
		}
	}
	_ = f.Close()
	if err := os.Truncate(filepath.Join(k.dir, "0.log"), 0); err != nil {
		t.Fatal(err)
	}
	k.mu.Lock()
	k.clock = time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC) // the same first timestamp: only the size tells
	k.mu.Unlock()
	k.write("stdout", message("stdout", 0))
	f, gap, err := crifile.Open(k.dir, "0.log", pos, crifile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if gap.Bytes != pos.Size-pos.Offset || gap.Bytes == 0 {
		t.Fatalf("gap %d, want %d", gap.Bytes, pos.Size-pos.Offset)
	}
	if e, _, err := f.Next(); err != nil || string(e.Line) != message("stdout", 0) {
		t.Fatalf("after truncation: %q %v", e.Line, err)
	}
}

// TestAReusedInodeIsAnotherFile: a file deleted and replaced by one with
// other content is not resumed as the old one, whatever its inode.
func TestAReusedInodeIsAnotherFile(t *testing.T) {
	k := newKubelet(t, 5)
	for i := range 5 {
		k.write("stdout", message("stdout", i))
	}
	f, _, err := crifile.Open(k.dir, "0.log", crifile.Position{}, crifile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, pos, err := f.Next()
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	// Another file at the same path; with the same inode or not, its head
	// differs (a later first timestamp).
	if err := os.Remove(filepath.Join(k.dir, "0.log")); err != nil {
		t.Fatal(err)
	}
	k.reopen()
	k.write("stdout", message("stdout", 0))
	f, gap, err := crifile.Open(k.dir, "0.log", pos, crifile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if gap.Bytes != pos.Size-pos.Offset {
		t.Fatalf("gap %d, want %d", gap.Bytes, pos.Size-pos.Offset)
	}
	if e, _, err := f.Next(); err != nil || string(e.Line) != message("stdout", 0) {
		t.Fatalf("the new file from its start: %q %v", e.Line, err)
	}
}

// TestNoFileLeftOpen: the follower holds one file at a time and none after
// Close.
func TestNoFileLeftOpen(t *testing.T) {
	k := newKubelet(t, 5)
	for range 3 {
		for i := range 50 {
			k.write("stdout", message("stdout", i))
		}
		k.rotate()
	}
	base := openFDs(t) // the runtime's file
	f, _, err := crifile.Open(k.dir, "0.log", crifile.Position{}, crifile.Options{Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, _, err := f.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n := openFDs(t); n > base+1 {
			t.Fatalf("%d files open, want at most %d", n, base+1)
		}
	}
	_ = f.Close()
	if n := openFDs(t); n != base {
		t.Fatalf("%d files open after Close, want %d", n, base)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// BenchmarkFollower reads a 64 MiB log of the peer corpus's mix (60% access
// lines, 30% JSON, 10% long records of 2–20 KB in 16 KiB chunks) from the
// page cache through the follower, merging and checking nothing else.
func BenchmarkFollower(b *testing.B) {
	dir := b.TempDir()
	f, err := os.Create(filepath.Join(dir, "0.log"))
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ts := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	records, size := 0, 0
	var sb strings.Builder
	for size < 64<<20 {
		var msg string
		switch r := rng.IntN(10); {
		case r < 6:
			msg = fmt.Sprintf(`10.0.%d.%d - - [02/Dec/2026:00:00:00 +0000] "GET /api/v1/items/%d HTTP/1.1" 200 %d "-" "Mozilla/5.0"`, rng.IntN(255), rng.IntN(255), rng.IntN(1e6), rng.IntN(1e5))
		case r < 9:
			msg = fmt.Sprintf(`{"level":"info","ts":%d,"caller":"svc/handler.go:%d","msg":"request served","trace_id":"%016x","status":200,"bytes":%d,"path":"/api/v1/items"}`, rng.IntN(1e9), rng.IntN(999), rng.Uint64(), rng.IntN(1e5))
		default:
			msg = strings.Repeat("z", 2000+rng.IntN(18000))
		}
		for {
			ts = ts.Add(time.Microsecond)
			tag, part := "F", msg
			if len(msg) > chunk {
				tag, part = "P", msg[:chunk]
			}
			sb.Reset()
			fmt.Fprintf(&sb, "%s stdout %s %s\n", ts.Format(time.RFC3339Nano), tag, part)
			n, _ := f.WriteString(sb.String())
			size += n
			msg = msg[len(part):]
			if tag == "F" {
				break
			}
		}
		records++
	}
	_ = f.Close()
	b.SetBytes(int64(size))
	b.ResetTimer()
	for b.Loop() {
		fl, _, err := crifile.Open(dir, "0.log", crifile.Position{}, crifile.Options{})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			_, _, err := fl.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		_ = fl.Close()
		if n != records {
			b.Fatalf("%d records of %d", n, records)
		}
	}
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
