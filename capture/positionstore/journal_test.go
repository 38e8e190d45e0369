//go:build unix

package positionstore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/log-capturer/log-capturer/capture"
)

// helperEnv makes the test binary a process that holds a journal's lock
// (TestMain) instead of running the tests.
const helperEnv = "LOG_CAPTURER_JOURNAL_HELPER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		os.Exit(holdJournal(dir))
	}
	os.Exit(m.Run())
}

// holdJournal opens the journal in dir, says so on stdout and sleeps until
// it is killed (or a minute passed, should the test not kill it).
func holdJournal(dir string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	j, err := OpenJournal(ctx, dir, JournalOptions{Holder: "helper-process"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := j.Save(ctx, capture.PipelineRef{Namespace: "shop", Name: "helper", UID: "u"}, []byte("from the helper"), 1); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("locked")
	time.Sleep(time.Minute)
	return 0
}

var webRef = capture.PipelineRef{Namespace: "shop", Name: "web", UID: "uid-1"}

func openTestJournal(t testing.TB, dir string, o JournalOptions) *Journal {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	j, err := OpenJournal(ctx, dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

// journalFile returns the bytes Save writes for data of ref.
func journalFile(ref capture.PipelineRef, data []byte, containers int) []byte {
	return append(encodeHeader(ref, data, containers), data...)
}

// reseal recomputes the header CRC of a journal file's bytes, after a test
// changed the fixed header.
func reseal(b []byte) []byte {
	n := int(binary.BigEndian.Uint16(b[6:])) + int(binary.BigEndian.Uint16(b[8:])) + int(binary.BigEndian.Uint16(b[10:]))
	end := fixedHeader + n
	binary.BigEndian.PutUint32(b[end:], crc32.Checksum(b[:end], castagnoli))
	return b
}

func mustPath(t testing.TB, j *Journal, ref capture.PipelineRef) string {
	t.Helper()
	p, err := j.path(ref)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestJournalRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "positions")
	j := openTestJournal(t, dir, JournalOptions{})
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("directory: %v, %v; want mode 0700", st.Mode(), err)
	}
	if data, err := j.Load(ctx, webRef); data != nil || err != nil {
		t.Fatalf("nothing stored: Load = %q, %v; want nil, nil", data, err)
	}
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	for _, d := range [][]byte{[]byte("one"), []byte("two, longer than one"), {}, big, []byte("last")} {
		if err := j.Save(ctx, webRef, d, 3); err != nil {
			t.Fatalf("Save of %d bytes: %v", len(d), err)
		}
		got, err := j.Load(ctx, webRef)
		if err != nil || !bytes.Equal(got, d) || got == nil {
			t.Fatalf("Load after saving %d bytes: %d bytes (nil %v), %v", len(d), len(got), got == nil, err)
		}
	}
	path := mustPath(t, j, webRef)
	if filepath.Base(path) != "shop.web.pos" {
		t.Errorf("file name %s, want shop.web.pos", filepath.Base(path))
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file: %v, %v; want mode 0600", st.Mode(), err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, journalFile(webRef, []byte("last"), 3)) {
		t.Fatalf("file bytes %q differ from the documented format", b)
	}
	if refs, err := j.Refs(); err != nil || !slices.Equal(refs, []capture.PipelineRef{webRef}) {
		t.Fatalf("Refs = %v, %v", refs, err)
	}
	if err := j.Save(ctx, webRef, make([]byte, DefaultJournalMaxBytes), 1); err == nil {
		t.Fatal("Save wrote more than MaxBytes")
	}
	if got, err := j.Load(ctx, webRef); string(got) != "last" || err != nil {
		t.Fatalf("after a refused Save: Load = %q, %v", got, err)
	}
	// Delete without UID, as the Manager calls it.
	if err := j.Delete(ctx, capture.PipelineRef{Namespace: "shop", Name: "web"}); err != nil {
		t.Fatal(err)
	}
	if data, err := j.Load(ctx, webRef); data != nil || err != nil {
		t.Fatalf("after Delete: Load = %q, %v", data, err)
	}
	if err := j.Delete(ctx, webRef); err != nil {
		t.Fatalf("deleting nothing: %v", err)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{LockFileName}) {
		t.Fatalf("directory holds %v, want only the lock", names)
	}
	// Another Journal on the directory later reads what this one saved.
	if err := j.Save(ctx, webRef, []byte("kept"), 1); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := j.Load(ctx, webRef); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Load after Close: %v, want os.ErrClosed", err)
	}
	if err := j.Save(ctx, webRef, []byte("late"), 1); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Save after Close: %v, want os.ErrClosed", err)
	}
	j2 := openTestJournal(t, dir, JournalOptions{})
	if got, err := j2.Load(ctx, webRef); string(got) != "kept" || err != nil {
		t.Fatalf("reopened: Load = %q, %v", got, err)
	}
}

func TestJournalDamage(t *testing.T) {
	ctx := context.Background()
	payload := []byte("positions of the web pipeline, gzip in real life")
	good := journalFile(webRef, payload, 2)
	hlen := len(good) - len(payload)
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		return b
	}
	garbage := make([]byte, 300)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	type damage struct {
		name  string
		bytes []byte
		make  func(t *testing.T, path string) // instead of bytes
		max   int64
	}
	cases := []damage{
		{name: "empty file", bytes: []byte{}},
		{name: "truncated fixed header", bytes: good[:10]},
		{name: "truncated names", bytes: good[:fixedHeader+3]},
		{name: "truncated header CRC", bytes: good[:hlen-1]},
		{name: "truncated payload", bytes: good[:len(good)-5]},
		{name: "header only", bytes: good[:hlen]},
		{name: "a byte too many", bytes: append(bytes.Clone(good), 0)},
		{name: "flipped payload byte", bytes: flip(len(good) - 3)},
		{name: "flipped namespace byte", bytes: flip(fixedHeader)},
		{name: "flipped UID byte", bytes: flip(hlen - 5)},
		{name: "flipped length byte", bytes: flip(19)},
		{name: "flipped header CRC", bytes: flip(hlen - 1)},
		{name: "wrong magic", bytes: reseal(append([]byte("LCPX"), good[4:]...))},
		{name: "wrong version", bytes: func() []byte {
			b := bytes.Clone(good)
			binary.BigEndian.PutUint16(b[4:], JournalVersion+1)
			return reseal(b)
		}()},
		{name: "payload length beyond the file", bytes: func() []byte {
			b := bytes.Clone(good)
			binary.BigEndian.PutUint32(b[16:], 1<<31)
			return reseal(b)
		}()},
		{name: "impossible namespace length", bytes: func() []byte {
			b := bytes.Clone(good)
			binary.BigEndian.PutUint16(b[6:], 0xffff)
			return b
		}()},
		{name: "invalid name in the header", bytes: func() []byte {
			b := bytes.Clone(good)
			b[fixedHeader] = '/' // "shop" becomes "/hop"
			return reseal(b)
		}()},
		{name: "garbage", bytes: garbage},
		{name: "garbage after the magic", bytes: append([]byte(journalMagic), garbage...)},
		{name: "larger than MaxBytes", bytes: journalFile(webRef, make([]byte, 5000), 1), max: 4096},
		{name: "directory", make: func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "symbolic link", make: func(t *testing.T, path string) {
			target := filepath.Join(t.TempDir(), "elsewhere")
			if err := os.WriteFile(target, good, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "FIFO", make: func(t *testing.T, path string) {
			if err := unix.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := openTestJournal(t, t.TempDir(), JournalOptions{MaxBytes: c.max})
			path := mustPath(t, j, webRef)
			if c.make != nil {
				c.make(t, path)
			} else if err := os.WriteFile(path, c.bytes, 0o600); err != nil {
				t.Fatal(err)
			}
			data, err := j.Load(ctx, webRef)
			if !errors.Is(err, ErrDamagedJournal) || data != nil {
				t.Fatalf("Load = %q, %v; want ErrDamagedJournal", data, err)
			}
			t.Logf("Load: %v", err)
			if refs, err := j.Refs(); err != nil || len(refs) != 0 {
				t.Fatalf("Refs = %v, %v; want the damaged file skipped", refs, err)
			}
			if c.name == "directory" {
				return // Save's rename cannot replace a directory; Load keeps reporting it
			}
			if err := j.Save(ctx, webRef, payload, 2); err != nil {
				t.Fatalf("Save over the damaged file: %v", err)
			}
			if got, err := j.Load(ctx, webRef); !bytes.Equal(got, payload) || err != nil {
				t.Fatalf("after Save: Load = %q, %v", got, err)
			}
		})
	}
	t.Run("a sparse 1 GiB file is refused without being read", func(t *testing.T) {
		j := openTestJournal(t, t.TempDir(), JournalOptions{})
		path := mustPath(t, j, webRef)
		if err := os.WriteFile(path, good, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, 1<<30); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		_, err := j.Load(ctx, webRef)
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrDamagedJournal) {
			t.Fatalf("Load: %v, want ErrDamagedJournal", err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<10 {
			t.Fatalf("Load allocated %d bytes for a refused file", alloc)
		}
		t.Logf("refused in %v, allocating %d bytes: %v", took, after.TotalAlloc-before.TotalAlloc, err)
	})
}

func TestJournalUIDMismatch(t *testing.T) {
	ctx := context.Background()
	j := openTestJournal(t, t.TempDir(), JournalOptions{})
	if err := j.Save(ctx, webRef, []byte("of the deleted pipeline"), 1); err != nil {
		t.Fatal(err)
	}
	successor := webRef
	successor.UID = "uid-2"
	if data, err := j.Load(ctx, successor); data != nil || err != nil {
		t.Fatalf("Load of a new pipeline of the same name = %q, %v; want nil, nil", data, err)
	}
	if data, err := j.Load(ctx, capture.PipelineRef{Namespace: "shop", Name: "web"}); string(data) != "of the deleted pipeline" || err != nil {
		t.Fatalf("Load without a UID = %q, %v; want the stored positions", data, err)
	}
	// A damaged payload under another UID is not read: nil, as the
	// positions would be dropped anyway.
	path := mustPath(t, j, webRef)
	b, _ := os.ReadFile(path)
	b[len(b)-1] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if data, err := j.Load(ctx, successor); data != nil || err != nil {
		t.Fatalf("Load of another UID's damaged payload = %q, %v; want nil, nil", data, err)
	}
	if err := j.Save(ctx, successor, []byte("new"), 1); err != nil {
		t.Fatal(err)
	}
	if data, err := j.Load(ctx, successor); string(data) != "new" || err != nil {
		t.Fatalf("after the new pipeline's Save: Load = %q, %v", data, err)
	}
	if data, err := j.Load(ctx, webRef); data != nil || err != nil {
		t.Fatalf("the deleted pipeline's UID now: Load = %q, %v; want nil, nil", data, err)
	}
	if refs, err := j.Refs(); err != nil || !slices.Equal(refs, []capture.PipelineRef{successor}) {
		t.Fatalf("Refs = %v, %v; want the new UID", refs, err)
	}
}

func TestJournalForeignFile(t *testing.T) {
	ctx := context.Background()
	j := openTestJournal(t, t.TempDir(), JournalOptions{})
	path := mustPath(t, j, webRef)
	other := journalFile(capture.PipelineRef{Namespace: "shop", Name: "api", UID: "uid-9"}, []byte("api's"), 1)
	if err := os.WriteFile(path, other, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Load(ctx, webRef); !errors.Is(err, capture.ErrForeignPositions) {
		t.Fatalf("Load: %v, want capture.ErrForeignPositions", err)
	}
	if err := j.Save(ctx, webRef, []byte("web's"), 1); !errors.Is(err, capture.ErrForeignPositions) {
		t.Fatalf("Save: %v, want capture.ErrForeignPositions", err)
	}
	if err := j.Delete(ctx, webRef); err != nil {
		t.Fatalf("Delete: %v, want nil (nothing of this pipeline stored)", err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, other) {
		t.Fatal("the other pipeline's file was changed")
	}
	if refs, err := j.Refs(); err != nil || len(refs) != 0 {
		t.Fatalf("Refs = %v, %v; want a file under another pipeline's name skipped", refs, err)
	}
}

func TestJournalRefusesInvalidRefs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	j := openTestJournal(t, dir, JournalOptions{})
	cases := []struct {
		name string
		ref  capture.PipelineRef
		says string
	}{
		{"empty namespace", capture.PipelineRef{Name: "web"}, "is empty"},
		{"empty name", capture.PipelineRef{Namespace: "shop"}, "is empty"},
		{"slash in the name", capture.PipelineRef{Namespace: "shop", Name: "a/b"}, "'/'"},
		{"slash in the namespace", capture.PipelineRef{Namespace: "../etc", Name: "passwd"}, "'/'"},
		{"NUL", capture.PipelineRef{Namespace: "shop", Name: "web\x00x"}, "NUL"},
		{"dot dot", capture.PipelineRef{Namespace: "shop", Name: ".."}, `".."`},
		{"dot dot inside", capture.PipelineRef{Namespace: "shop", Name: "a..b"}, `".."`},
		{"dot", capture.PipelineRef{Namespace: "shop", Name: "."}, "begin and end"},
		{"leading dot", capture.PipelineRef{Namespace: "shop", Name: ".tmp-1"}, "begin and end"},
		{"dot in the namespace", capture.PipelineRef{Namespace: "a.b", Name: "web"}, `'.'`},
		{"upper case", capture.PipelineRef{Namespace: "shop", Name: "Web"}, `'W'`},
		{"space", capture.PipelineRef{Namespace: "shop", Name: "we b"}, `' '`},
		{"long namespace", capture.PipelineRef{Namespace: strings.Repeat("n", 64), Name: "web"}, "more than 63"},
		{"long name", capture.PipelineRef{Namespace: "shop", Name: strings.Repeat("a", 254)}, "more than 253"},
		{"long UID", capture.PipelineRef{Namespace: "shop", Name: "web", UID: strings.Repeat("u", 129)}, "more than 128"},
		{"NUL in the UID", capture.PipelineRef{Namespace: "shop", Name: "web", UID: "u\x00"}, "NUL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, lerr := j.Load(ctx, c.ref)
			serr := j.Save(ctx, c.ref, []byte("x"), 1)
			derr := j.Delete(ctx, c.ref)
			for op, err := range map[string]error{"Load": lerr, "Save": serr, "Delete": derr} {
				if !errors.Is(err, ErrInvalidRef) || !strings.Contains(err.Error(), c.says) {
					t.Errorf("%s: %v; want ErrInvalidRef saying %s", op, err, c.says)
				}
			}
			t.Logf("%v", lerr)
		})
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{LockFileName}) {
		t.Fatalf("the directory holds %v after invalid refs, want only the lock", names)
	}
}

func TestJournalLongNames(t *testing.T) {
	ctx := context.Background()
	j := openTestJournal(t, t.TempDir(), JournalOptions{})
	seen := map[string]capture.PipelineRef{}
	var want []capture.PipelineRef
	for _, ns := range []string{"n", strings.Repeat("n", 63)} {
		for _, n := range []int{1, 180, 185, 186, 187, 189, 190, 252, 253} {
			ref := capture.PipelineRef{Namespace: ns, Name: strings.Repeat("a", n-1) + "z", UID: "u"}
			for _, r := range []capture.PipelineRef{ref, {Namespace: ns, Name: strings.Repeat("a", n-1) + "y", UID: "u"}} {
				name, err := fileName(r)
				if err != nil {
					t.Fatal(err)
				}
				if len(name) > maxFileName {
					t.Fatalf("%d+%d bytes: a file name of %d bytes", len(r.Namespace), len(r.Name), len(name))
				}
				if other, ok := seen[name]; ok {
					t.Fatalf("%v and %v share the file %s", other, r, name)
				}
				seen[name] = r
				if err := j.Save(ctx, r, []byte(r.Name), 1); err != nil {
					t.Fatal(err)
				}
				want = append(want, r)
			}
		}
	}
	for _, r := range want {
		if got, err := j.Load(ctx, r); string(got) != r.Name || err != nil {
			t.Fatalf("%d+%d bytes: Load = %d bytes, %v", len(r.Namespace), len(r.Name), len(got), err)
		}
	}
	refs, err := j.Refs()
	if err != nil {
		t.Fatal(err)
	}
	key := func(a, b capture.PipelineRef) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	}
	slices.SortFunc(refs, key)
	slices.SortFunc(want, key)
	if !slices.Equal(refs, want) {
		t.Fatalf("Refs listed %d pipelines, want %d", len(refs), len(want))
	}
	t.Logf("%d pipelines with names of 1 to 253 bytes in namespaces of 1 and 63: distinct files of at most %d bytes", len(want), maxFileName)
}

func TestJournalTempLeftovers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	j := openTestJournal(t, dir, JournalOptions{})
	if err := j.Save(ctx, webRef, []byte("saved"), 1); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// What a writer killed during Save leaves, and files that are none of
	// the journal's.
	for name, b := range map[string][]byte{
		".tmp-12345":  journalFile(webRef, []byte("half written"), 1)[:30],
		".tmp-67890":  journalFile(webRef, []byte("whole but never renamed"), 1),
		"README":      []byte("not ours"),
		"shop.db.bak": []byte("not ours either"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, ".tmp-dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	j = openTestJournal(t, dir, JournalOptions{})
	if names := dirNames(t, dir); !slices.Equal(names, []string{".tmp-dir", LockFileName, "README", "shop.db.bak", "shop.web.pos"}) {
		t.Fatalf("after OpenJournal the directory holds %v", names)
	}
	// One left while the journal is open is ignored by Load and Refs.
	if err := os.WriteFile(filepath.Join(dir, ".tmp-999.pos"), journalFile(webRef, []byte("stray"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := j.Load(ctx, webRef); string(got) != "saved" || err != nil {
		t.Fatalf("Load = %q, %v", got, err)
	}
	if refs, err := j.Refs(); err != nil || !slices.Equal(refs, []capture.PipelineRef{webRef}) {
		t.Fatalf("Refs = %v, %v", refs, err)
	}
	for range 20 {
		if err := j.Save(ctx, webRef, []byte("again"), 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range dirNames(t, dir) {
		if strings.HasPrefix(n, tempPrefix) && n != ".tmp-999.pos" && n != ".tmp-dir" {
			t.Fatalf("Save left %s", n)
		}
	}
}

func TestJournalSecondOpenerWaits(t *testing.T) {
	dir := t.TempDir()
	first := openTestJournal(t, dir, JournalOptions{Holder: "agent-old\nwith a newline"})
	lock, err := os.ReadFile(filepath.Join(dir, LockFileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("LOCK holds %q", lock)
	host, _ := os.Hostname()
	for _, want := range []string{"pid=" + strconv.Itoa(os.Getpid()), "host=" + host, "since=", `holder="agent-old with a newline"`} {
		if !bytes.Contains(lock, []byte(want)) {
			t.Fatalf("LOCK %q lacks %s", lock, want)
		}
	}

	// Started before the deadline is set, so that it cannot end sooner.
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 350*time.Millisecond)
	defer cancel()
	j, err := OpenJournal(ctx, dir, JournalOptions{Holder: "agent-new"})
	waited := time.Since(start)
	if err == nil {
		_ = j.Close()
		t.Fatal("a second Journal opened a locked directory")
	}
	if !errors.Is(err, ErrJournalLocked) || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "agent-old") || !strings.Contains(err.Error(), "pid="+strconv.Itoa(os.Getpid())) {
		t.Fatalf("OpenJournal: %v; want ErrJournalLocked and the deadline, naming the holder", err)
	}
	if waited < 350*time.Millisecond {
		t.Fatalf("gave up after %v, before its context ended", waited)
	}
	t.Logf("gave up after %v: %v", waited, err)

	type opened struct {
		j   *Journal
		err error
		at  time.Time
	}
	done := make(chan opened, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		j, err := OpenJournal(ctx, dir, JournalOptions{Holder: "agent-new"})
		done <- opened{j, err, time.Now()}
	}()
	select {
	case o := <-done:
		t.Fatalf("opened while the first held the lock: %v", o.err)
	case <-time.After(500 * time.Millisecond):
	}
	closed := time.Now()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	defer func() { _ = o.j.Close() }()
	after := o.at.Sub(closed)
	if after > time.Second {
		t.Fatalf("opened %v after the first Close", after)
	}
	t.Logf("the waiting opener held the lock %v after the first Close", after)
	if lock, _ := os.ReadFile(filepath.Join(dir, LockFileName)); !bytes.Contains(lock, []byte(`holder="agent-new"`)) {
		t.Fatalf("LOCK holds %q, want the new holder", lock)
	}
}

// TestJournalLockFileRemovedWhileWaiting: the holder removes LOCK (an agent
// removing its journal at an uninstall) while a second opener waits for it.
// The waiter must end up holding the LOCK that is at the path, so that a
// third opener waits for it instead of opening the journal beside it.
func TestJournalLockFileRemovedWhileWaiting(t *testing.T) {
	dir := t.TempDir()
	first := openTestJournal(t, dir, JournalOptions{Holder: "agent-old"})
	done := make(chan *Journal, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		j, err := OpenJournal(ctx, dir, JournalOptions{Holder: "agent-second"})
		if err != nil {
			t.Error(err)
		}
		done <- j
	}()
	time.Sleep(300 * time.Millisecond) // the second opener waits on the old LOCK
	if err := os.Remove(filepath.Join(dir, LockFileName)); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second := <-done
	if second == nil {
		t.FailNow()
	}
	defer func() { _ = second.Close() }()
	if lock, err := os.ReadFile(filepath.Join(dir, LockFileName)); err != nil || !bytes.Contains(lock, []byte(`holder="agent-second"`)) {
		t.Fatalf("LOCK at the path holds %q (%v), want the second opener", lock, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if third, err := OpenJournal(ctx, dir, JournalOptions{Holder: "agent-third"}); err == nil {
		_ = third.Close()
		t.Fatal("a third opener got the journal while the second held it")
	} else if !errors.Is(err, ErrJournalLocked) {
		t.Fatalf("third opener: %v, want ErrJournalLocked", err)
	}
}

func TestJournalLockReleasedOnKill(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}
	pid := "pid=" + strconv.Itoa(cmd.Process.Pid)

	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	if j, err := OpenJournal(ctx, dir, JournalOptions{}); err == nil {
		_ = j.Close()
		t.Fatal("opened while the helper held the lock")
	} else if !errors.Is(err, ErrJournalLocked) || !strings.Contains(err.Error(), pid) || !strings.Contains(err.Error(), "helper-process") {
		t.Fatalf("OpenJournal: %v; want ErrJournalLocked naming %s", err, pid)
	} else {
		t.Logf("while the helper lives: %v", err)
	}

	killed := time.Now()
	if err := cmd.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	j, err := OpenJournal(ctx, dir, JournalOptions{})
	if err != nil {
		t.Fatalf("after kill -9 of the holder: %v", err)
	}
	defer func() { _ = j.Close() }()
	t.Logf("opened %v after kill -9 of the holder (pid %d)", time.Since(killed), cmd.Process.Pid)
	ref := capture.PipelineRef{Namespace: "shop", Name: "helper", UID: "u"}
	if got, err := j.Load(context.Background(), ref); string(got) != "from the helper" || err != nil {
		t.Fatalf("the killed holder's positions: %q, %v", got, err)
	}
}

func TestJournalConcurrentPipelines(t *testing.T) {
	ctx := context.Background()
	j := openTestJournal(t, t.TempDir(), JournalOptions{})
	const workers, rounds = 8, 60
	var wg sync.WaitGroup
	errs := make(chan error, workers+1)
	stop := make(chan struct{})
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			ref := capture.PipelineRef{Namespace: "ns" + strconv.Itoa(w%3), Name: "p" + strconv.Itoa(w), UID: "u" + strconv.Itoa(w)}
			for i := range rounds {
				data := bytes.Repeat([]byte(fmt.Sprintf("%s round %d;", ref.Name, i)), 1+i*13%200)
				if err := j.Save(ctx, ref, data, i); err != nil {
					errs <- err
					return
				}
				got, err := j.Load(ctx, ref)
				if err != nil || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("%s round %d: Load = %d bytes, %w", ref.Name, i, len(got), err)
					return
				}
			}
		})
	}
	var listed int
	lister := make(chan struct{})
	go func() {
		defer close(lister)
		for {
			select {
			case <-stop:
				return
			default:
			}
			refs, err := j.Refs()
			if err != nil || len(refs) > workers {
				errs <- fmt.Errorf("Refs = %d pipelines, %w", len(refs), err)
				return
			}
			listed++
		}
	}()
	wg.Wait()
	close(stop)
	<-lister
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	refs, err := j.Refs()
	if err != nil || len(refs) != workers {
		t.Fatalf("Refs = %v, %v; want %d pipelines", refs, err, workers)
	}
	t.Logf("%d goroutines × %d Save+Load with fsync in %v; Refs listed the journal %d times meanwhile", workers, rounds, time.Since(start), listed)
}

func FuzzJournalLoad(f *testing.F) {
	ctx := context.Background()
	payload := []byte("\x1f\x8b positions")
	good := journalFile(webRef, payload, 4)
	f.Add(good)
	f.Add(good[:10])
	f.Add(good[:len(good)-1])
	f.Add(append(bytes.Clone(good), 'x'))
	f.Add([]byte{})
	f.Add([]byte(journalMagic))
	f.Add(journalFile(capture.PipelineRef{Namespace: "shop", Name: "web", UID: "old"}, payload, 1))
	f.Add(journalFile(capture.PipelineRef{Namespace: "shop", Name: "web"}, nil, 0))
	f.Add(journalFile(capture.PipelineRef{Namespace: "shop", Name: "api", UID: "uid-1"}, payload, 1))
	f.Add(reseal(append([]byte("LCPJ\x00\x02"), good[6:]...)))
	j := openTestJournal(f, f.TempDir(), JournalOptions{MaxBytes: 1 << 16})
	path := mustPath(f, j, webRef)
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		data, err := j.Load(ctx, webRef)
		refs, rerr := j.Refs()
		if rerr != nil {
			t.Fatalf("Refs: %v", rerr)
		}
		if err != nil {
			if data != nil || !errors.Is(err, ErrDamagedJournal) && !errors.Is(err, capture.ErrForeignPositions) {
				t.Fatalf("Load = %q, %v; want ErrDamagedJournal or capture.ErrForeignPositions", data, err)
			}
			return
		}
		h, herr := decodeHeader(bytes.NewReader(b), int64(len(b)))
		if herr != nil {
			t.Fatalf("Load accepted a file whose header does not decode: %v", herr)
		}
		if data == nil {
			if h.ref.UID == webRef.UID {
				t.Fatalf("Load returned nothing for a file of the pipeline's own UID")
			}
			return // a deleted pipeline's
		}
		if !bytes.Equal(journalFile(h.ref, data, int(h.containers)), b) || h.ref != webRef {
			t.Fatalf("Load returned %q from a file Save would not have written for it", data)
		}
		if !slices.Equal(refs, []capture.PipelineRef{webRef}) {
			t.Fatalf("Refs = %v for a whole file", refs)
		}
	})
}

func TestJournalStage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	j := openTestJournal(t, dir, JournalOptions{})
	// Staged and saved positions are one file: the last write wins,
	// whichever it was, and it has the documented format.
	steps := []struct {
		stage bool
		data  string
	}{{true, "staged first"}, {false, "saved"}, {true, "staged after the save"}, {true, "staged again"}}
	for _, s := range steps {
		write := j.Save
		if s.stage {
			write = j.Stage
		}
		if err := write(ctx, webRef, []byte(s.data), 2); err != nil {
			t.Fatalf("writing %q (stage %v): %v", s.data, s.stage, err)
		}
		if got, err := j.Load(ctx, webRef); string(got) != s.data || err != nil {
			t.Fatalf("Load after writing %q (stage %v) = %q, %v", s.data, s.stage, got, err)
		}
	}
	if b, _ := os.ReadFile(mustPath(t, j, webRef)); !bytes.Equal(b, journalFile(webRef, []byte("staged again"), 2)) {
		t.Fatalf("staged file bytes %q differ from the documented format", b)
	}
	if names := dirNames(t, dir); len(names) != 2 {
		t.Fatalf("directory holds %v, want the lock and one file (no temporary file left)", names)
	}
	if err := j.Stage(ctx, webRef, make([]byte, DefaultJournalMaxBytes), 1); err == nil {
		t.Fatal("Stage wrote more than MaxBytes")
	}
	other := journalFile(capture.PipelineRef{Namespace: "shop", Name: "api", UID: "uid-9"}, []byte("api's"), 1)
	if err := os.WriteFile(mustPath(t, j, webRef), other, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := j.Stage(ctx, webRef, []byte("web's"), 1); !errors.Is(err, capture.ErrForeignPositions) {
		t.Fatalf("Stage over another pipeline's file: %v, want capture.ErrForeignPositions", err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Stage(ctx, webRef, []byte("late"), 1); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Stage after Close: %v, want os.ErrClosed", err)
	}
}
