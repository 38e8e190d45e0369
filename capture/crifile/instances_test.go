package crifile_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/log-capturer/log-capturer/capture/crifile"
	"github.com/log-capturer/log-capturer/capture/crifile/crifiletest"
)

func TestLogBases(t *testing.T) {
	for _, tc := range []struct {
		base string
		n    int
		ok   bool
	}{
		{"0.log", 0, true}, {"17.log", 17, true}, {".log", 0, false}, {"a.log", 0, false},
		{"1.log.20261202-000001", 0, false}, {"-1.log", 0, false}, {"1234567890.log", 0, false}, {"0.txt", 0, false},
	} {
		if n, ok := crifile.ParseLogBase(tc.base); n != tc.n || ok != tc.ok {
			t.Errorf("ParseLogBase(%q) = %d, %v; want %d, %v", tc.base, n, ok, tc.n, tc.ok)
		}
	}
	if crifile.LogBase(3) != "3.log" {
		t.Error(crifile.LogBase(3))
	}
}

// TestInstancesAndOpenSince: the restart counts of a directory, rotated
// files included; OpenSince starts at the file that holds the time.
func TestInstancesAndOpenSince(t *testing.T) {
	dir := t.TempDir()
	if got, err := crifile.Instances(filepath.Join(dir, "missing")); err != nil || got != nil {
		t.Fatalf("a missing directory: %v %v", got, err)
	}
	k0 := crifiletest.New(t, dir, "0.log", 5, false)
	for i := range 10 {
		k0.Write("stdout", crifiletest.Message("stdout", i))
	}
	k0.Rotate()
	mid := crifiletest.Synthetic.Add(11 * time.Microsecond) // record 10, the second file's first
	for i := 10; i < 20; i++ {
		k0.Write("stdout", crifiletest.Message("stdout", i))
	}
	k0.Close()
	k2 := crifiletest.New(t, dir, "2.log", 5, false)
	k2.Write("stdout", "restart")
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := crifile.Instances(dir)
	if err != nil || !slices.Equal(got, []int{0, 2}) {
		t.Fatalf("instances %v %v, want [0 2]", got, err)
	}
	f, err := crifile.OpenSince(dir, "0.log", mid, crifile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e, _, err := f.Next()
	if err != nil || !strings.HasPrefix(string(e.Line), "stdout seq=10 ") {
		t.Fatalf("OpenSince the second file: %.30q %v", e.Line, err)
	}
	early, err := crifile.OpenSince(dir, "0.log", crifiletest.Synthetic.Add(-time.Hour), crifile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	if e, _, err := early.Next(); err != nil || !strings.HasPrefix(string(e.Line), "stdout seq=0 ") {
		t.Fatalf("OpenSince before every file: %.30q %v", e.Line, err)
	}
}

// TestWatcherWakesOnWrites: a wait returns on a change in its directory,
// and after the poll interval in one that cannot be watched.
func TestWatcherWakesOnWrites(t *testing.T) {
	w := &crifile.Watcher{Safety: time.Hour, Poll: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if !w.Inotify() {
		t.Skip("no inotify here")
	}
	dir := t.TempDir()
	x := w.Watch(dir)
	defer x.Close()
	go func() {
		time.Sleep(50 * time.Millisecond)
		_ = os.WriteFile(filepath.Join(dir, "0.log"), []byte("x\n"), 0o600)
	}()
	start := time.Now()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := x.Wait(wctx); err != nil || time.Since(start) > 5*time.Second {
		t.Fatalf("woke after %s: %v", time.Since(start), err)
	}
	gone := w.Watch(filepath.Join(dir, "missing"))
	defer gone.Close()
	start = time.Now()
	if err := gone.Wait(wctx); err != nil || time.Since(start) > 5*time.Second {
		t.Fatalf("a polled wait took %s: %v", time.Since(start), err)
	}
}
