package crifile_test

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/log-capturer/log-capturer/capture/crifile"
	"github.com/log-capturer/log-capturer/capture/crifile/crifiletest"
)

// newKubelet starts container log 0.log in a new directory, with the
// synthetic clock.
func newKubelet(t *testing.T, maxFiles int) *crifiletest.Kubelet {
	t.Helper()
	return crifiletest.New(t, t.TempDir(), "0.log", maxFiles, false)
}

var message = crifiletest.Message

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

// numbered writes numbered records to a simulated log, every fifth to
// stderr, and counts them per stream (what reader.check expects).
type numbered struct {
	k      *crifiletest.Kubelet
	counts map[string]int
}

func newNumbered(k *crifiletest.Kubelet) *numbered {
	return &numbered{k: k, counts: map[string]int{}}
}

// write writes n records and returns their CRI bytes.
func (w *numbered) write(n int) int {
	b := 0
	for range n {
		s := streamOf(w.total())
		b += w.k.Write(s, message(s, w.counts[s]))
		w.counts[s]++
	}
	return b
}

// total is how many records were written.
func (w *numbered) total() int { return w.counts["stdout"] + w.counts["stderr"] }

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
			k.Write(s, message(s, counts[s]))
			counts[s]++
			if i%300 == 299 {
				k.Rotate()
			}
		}
	}()
	f, gap, err := crifile.Open(k.Dir, "0.log", crifile.Position{}, crifile.Options{Grace: 20 * time.Millisecond})
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
	if k.Rotations() != total/300 {
		t.Fatalf("%d rotations", k.Rotations())
	}
}

// TestResumesInsideGzippedFiles: a reader stopped while three rotations
// happen resumes at its position, now inside a gzipped file, and reads on
// into the newer files: nothing lost, nothing twice.
func TestResumesInsideGzippedFiles(t *testing.T) {
	k := newKubelet(t, 10)
	w := newNumbered(k)
	write := func(n int) { w.write(n) }
	write(500)
	f, _, err := crifile.Open(k.Dir, "0.log", crifile.Position{}, crifile.Options{Grace: time.Millisecond})
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
		k.Rotate()
		write(400)
	}
	if gz, _ := filepath.Glob(filepath.Join(k.Dir, "0.log.20261202-000001*")); len(gz) != 1 || !strings.HasSuffix(gz[0], ".gz") {
		t.Fatalf("the first file is %v, want it gzipped", gz)
	}
	f, gap, err := crifile.Open(k.Dir, "0.log", pos, crifile.Options{Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if gap.Bytes != 0 {
		t.Fatalf("gap of %d bytes, want none", gap.Bytes)
	}
	total := w.total()
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
	w := newNumbered(k)
	write := w.write
	written += write(40) // well under one read buffer (the reader sees all of it)
	f, _, err := crifile.Open(k.Dir, "0.log", crifile.Position{}, crifile.Options{Grace: time.Millisecond})
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
	k.Rotate()
	write(10)
	k.Rotate() // deletes the first file: only one rotated file is kept
	write(10)
	f, gap, err := crifile.Open(k.Dir, "0.log", pos, crifile.Options{Grace: time.Millisecond})
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

// TestCountsWholeFilesDeletedUnread: a reader that stopped early in one
// file, while the kubelet rotated three times and deleted that file and
// the next one it had listed, counts exactly the bytes of both it did not
// read, and continues with the oldest file left.
func TestCountsWholeFilesDeletedUnread(t *testing.T) {
	k := newKubelet(t, 3) // the live file and two rotated ones
	seq, written := 0, make(map[int]int64)
	write := func(n int) {
		for range n {
			written[k.Rotations()] += int64(k.Write("stdout", fmt.Sprintf("stdout seq=%d short", seq)))
			seq++
		}
	}
	write(20)
	k.Rotate()
	write(20)
	f, _, err := crifile.Open(k.Dir, "0.log", crifile.Position{}, crifile.Options{Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var pos crifile.Position
	for range 5 { // 5 records of the first file, which is rotated already
		if _, pos, err = f.Next(); err != nil {
			t.Fatal(err)
		}
	}
	known := f.Known()
	_ = f.Close()
	if len(known) != 2 {
		t.Fatalf("the follower knew %d files, want 2 (the rotated one and the live one)", len(known))
	}
	var deleted int64
	for range 3 {
		deleted += k.Rotate()
		write(20)
	}
	if want := written[0] + written[1]; deleted != want {
		t.Fatalf("the kubelet deleted %d bytes, want the first two files' %d", deleted, want)
	}
	f, gap, err := crifile.Open(k.Dir, "0.log", pos, crifile.Options{Grace: time.Millisecond, Known: known})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if want := deleted - pos.Offset; gap.Bytes != want || gap.Files != 2 {
		t.Fatalf("gap of %d bytes in %d files, want %d bytes (of %d deleted, %d read) in 2", gap.Bytes, gap.Files, want, deleted, pos.Offset)
	}
	e, _, err := f.Next()
	if err != nil || !strings.HasPrefix(string(e.Line), "stdout seq=40 ") {
		t.Fatalf("after the gap: %.40q %v, want the first record of the third file", e.Line, err)
	}
}

// TestTruncatedInPlace: a file truncated under the reader (copytruncate) is
// read again from its start, and what was after the position is counted.
func TestTruncatedInPlace(t *testing.T) {
	k := newKubelet(t, 5)
	for i := range 20 {
		k.Write("stdout", message("stdout", i))
	}
	f, _, err := crifile.Open(k.Dir, "0.log", crifile.Position{}, crifile.Options{})
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
	if err := os.Truncate(filepath.Join(k.Dir, "0.log"), 0); err != nil {
		t.Fatal(err)
	}
	k.SetClock(crifiletest.Synthetic) // the same first timestamp: only the size tells
	k.Write("stdout", message("stdout", 0))
	f, gap, err := crifile.Open(k.Dir, "0.log", pos, crifile.Options{})
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
		k.Write("stdout", message("stdout", i))
	}
	f, _, err := crifile.Open(k.Dir, "0.log", crifile.Position{}, crifile.Options{})
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
	if err := os.Remove(filepath.Join(k.Dir, "0.log")); err != nil {
		t.Fatal(err)
	}
	k.Reopen()
	k.Write("stdout", message("stdout", 0))
	f, gap, err := crifile.Open(k.Dir, "0.log", pos, crifile.Options{})
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
			k.Write("stdout", message("stdout", i))
		}
		k.Rotate()
	}
	base := openFDs(t) // the runtime's file
	f, _, err := crifile.Open(k.Dir, "0.log", crifile.Position{}, crifile.Options{Grace: time.Millisecond})
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
			if len(msg) > crifiletest.Chunk {
				tag, part = "P", msg[:crifiletest.Chunk]
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

// TestResumeRacingTheRename: a reader resumes at the end of the live file
// just as the kubelet renames it and the runtime creates the new one; its
// listing misses the renamed file, or the file is gone and the new one is
// still empty. It must neither go back to the oldest file (every record
// again) nor skip ahead: it asks again, and resumes where it was.
func TestResumeRacingTheRename(t *testing.T) {
	k := newKubelet(t, 10)
	w := newNumbered(k)
	write := func(n int) { w.write(n) }
	total := w.total
	write(300)
	k.Rotate()
	write(300)
	r := &reader{t: t, next: map[crifile.Stream]int{}}
	f, _, err := crifile.Open(k.Dir, "0.log", crifile.Position{}, crifile.Options{Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pos := r.drain(f, func() bool { return r.next[crifile.Stdout]+r.next[crifile.Stderr] == total() })
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	// The live file, read to its end, moves out of the listing (mid
	// rename) and the runtime's new file is there, empty.
	live, hidden := filepath.Join(k.Dir, "0.log"), filepath.Join(k.Dir, "renaming")
	if err := os.Rename(live, hidden); err != nil {
		t.Fatal(err)
	}
	k.Reopen()
	if _, _, err := crifile.Open(k.Dir, "0.log", pos, crifile.Options{Grace: time.Millisecond}); err == nil || errors.Is(err, crifile.ErrNoLog) {
		t.Fatalf("resuming with the file read last unlisted and the new one empty: %v; want an error to try again, not the end of the log", err)
	}

	// The rename completes: the reader resumes where it was, with nothing
	// read twice, and goes on into the new file.
	if err := os.Rename(hidden, filepath.Join(k.Dir, "0.log.20261202-000009")); err != nil {
		t.Fatal(err)
	}
	write(200)
	f, gap, err := crifile.Open(k.Dir, "0.log", pos, crifile.Options{Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if gap != (crifile.Gap{}) {
		t.Errorf("gap %+v, want none", gap)
	}
	pos = r.drain(f, func() bool { return r.next[crifile.Stdout]+r.next[crifile.Stderr] == total() })
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	// Deleted before it was listed again, with the new file empty: again
	// no going back; once the new file has data, it goes on there.
	if err := os.Rename(live, hidden); err != nil {
		t.Fatal(err)
	}
	k.Reopen()
	if err := os.Remove(hidden); err != nil {
		t.Fatal(err)
	}
	if _, _, err := crifile.Open(k.Dir, "0.log", pos, crifile.Options{Grace: time.Millisecond}); err == nil || errors.Is(err, crifile.ErrNoLog) {
		t.Fatalf("resuming with the file read last deleted and the new one empty: %v; want an error to try again", err)
	}
	write(100)
	f, _, err = crifile.Open(k.Dir, "0.log", pos, crifile.Options{Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r.drain(f, func() bool { return r.next[crifile.Stdout]+r.next[crifile.Stderr] == total() })
	if e, _, err := f.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("a record after the last: %+v %v", e, err)
	}
}
