package sinks_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/sinks"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

// startIn runs a sink of pipeline ("<namespace>/<name>") from f.
func startIn(t *testing.T, f *sinks.Factory, pipeline string, c capture.SinkConfig) *running {
	t.Helper()
	s, err := f.New(pipeline, c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Sink: s, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		s.Run(ctx)
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// TestAHangingNamespaceFillsOnlyItsShare runs namespace hog, whose Loki
// fails every push, beside namespace calm, whose sink delivers, under one
// budget: hog gets its whenFull behaviour at its share while its own buffer
// has room, calm delivers every line, and the queues never hold more than
// the budget.
func TestAHangingNamespaceFillsOnlyItsShare(t *testing.T) {
	const budgetBytes = 256 << 10
	for _, policy := range []string{sinks.Block, sinks.DropNewest, sinks.DropOldest} {
		t.Run(policy, func(t *testing.T) {
			budget := sinks.NewBudget(budgetBytes)
			out := &syncBuffer{}
			reg := prometheus.NewRegistry()
			f := sinks.NewFactory(sinks.Options{AllowLoopbackEgress: true, Stdout: out, FileRoot: t.TempDir(), RequestTimeout: 500 * time.Millisecond, Budget: budget})
			reg.MustRegister(f)
			rcv, srv := newReceiver(t)
			rcv.FailAll(lokireceiver.Fault{Status: 500})

			hogCfg := lokiConfig(srv.URL)
			hogCfg.WhenFull = policy // its own 8Mi buffer is far from full
			hog := startIn(t, f, "hog/p", hogCfg)
			calmCfg := sinkConfig("stdout")
			calmCfg.Kind, calmCfg.Stdout = capture.SinkStdout, &capture.StdoutConfig{}
			calm := startIn(t, f, "calm/p", calmCfg)

			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			recs := records(4000) // about 1.2 MB at their real cost
			blocked := 0
			for i, r := range recs {
				if err := hog.Write(ctx, r); err != nil {
					blocked = len(recs) - i
					break
				}
				if used := budget.Used(); used > budgetBytes {
					t.Fatalf("the queues hold %d bytes, over the budget of %d", used, budgetBytes)
				}
			}
			st := hog.Sink.(capture.StatsReporter).Stats()
			share := int64(budgetBytes / 2)
			if st.NamespaceShareBytes != share || st.BudgetNamespaces != 2 || st.MemoryBudgetBytes != budgetBytes {
				t.Fatalf("share %d of %d between %d namespaces, want %d of %d between 2", st.NamespaceShareBytes, st.MemoryBudgetBytes, st.BudgetNamespaces, share, budgetBytes)
			}
			if st.QueueBytes > share || st.NamespaceQueuedBytes > share {
				t.Fatalf("hog queues %d bytes (namespace %d), over its share %d", st.QueueBytes, st.NamespaceQueuedBytes, share)
			}
			if st.MemoryShareLimited == 0 || st.LastMemoryShareLimited.IsZero() {
				t.Fatalf("no line was counted as finding the share full: %+v", st)
			}
			shareDrops := droppedFor(t, reg, "memory_share")
			switch policy {
			case sinks.Block:
				if blocked == 0 || shareDrops != 0 {
					t.Fatalf("Block: %d writes left blocked, %v dropped; want blocked and nothing dropped", blocked, shareDrops)
				}
			default:
				if blocked != 0 || shareDrops == 0 || int64(shareDrops) != st.DroppedLines {
					t.Fatalf("%s: blocked %d, %v dropped for the share of %d dropped; want every drop counted as memory_share", policy, blocked, shareDrops, st.DroppedLines)
				}
			}

			// The other namespace is untouched: every line, nothing dropped
			// (written faster than stdout takes them, it may wait for its
			// own share, never for hog's).
			calmRecs := records(3000)
			write(t, calm, calmRecs)
			calm.stop(t)
			if n := strings.Count(out.String(), "\n"); n != len(calmRecs) {
				t.Fatalf("calm delivered %d lines of %d", n, len(calmRecs))
			}
			if cst := calm.Sink.(capture.StatsReporter).Stats(); cst.DroppedLines != 0 {
				t.Fatalf("calm was limited: %+v", cst)
			}

			// hog recovers: what it queued arrives, and the budget is given back.
			rcv.Recover()
			hog.stop(t)
			if policy == sinks.Block && rcv.Len() == 0 {
				t.Fatal("hog delivered nothing after recovering")
			}
			if used := budget.Used(); used != 0 {
				t.Fatalf("the budget still counts %d bytes after every sink closed", used)
			}
		})
	}
}

// TestABlockedWriterWakesWhenItsNamespaceDrains: a Block sink waiting for
// its namespace's share resumes when another sink of the namespace sends.
func TestABlockedWriterWakesWhenItsNamespaceDrains(t *testing.T) {
	budget := sinks.NewBudget(64 << 10)
	f := sinks.NewFactory(sinks.Options{AllowLoopbackEgress: true, Stdout: &syncBuffer{}, FileRoot: t.TempDir(), RequestTimeout: 500 * time.Millisecond, Budget: budget})
	rcv, srv := newReceiver(t)
	rcv.FailAll(lokireceiver.Fault{Status: 500})
	a := startIn(t, f, "ns/a", lokiConfig(srv.URL))
	b := startIn(t, f, "ns/b", lokiConfig(srv.URL))
	recs := records(600)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	n := 0
	for _, r := range recs[:300] {
		if a.Write(ctx, r) != nil {
			break
		}
		n++
	}
	if n == 300 {
		t.Fatal("the share never filled")
	}
	done := make(chan error, 1)
	go func() { done <- b.Write(context.Background(), recs[300]) }()
	select {
	case err := <-done:
		t.Fatalf("b wrote into a full share: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	rcv.Recover()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b was not woken when a's lines were sent")
	}
}

// syncBuffer is a bytes.Buffer safe for the sink's writer and the test.
type syncBuffer struct {
	mu chanMutex
	b  bytes.Buffer
}

type chanMutex struct{ c chan struct{} }

func (m *chanMutex) lock() {
	if m.c == nil {
		m.c = make(chan struct{}, 1)
	}
	m.c <- struct{}{}
}
func (m *chanMutex) unlock() { <-m.c }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.lock()
	defer s.mu.unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.lock()
	defer s.mu.unlock()
	return s.b.String()
}

// droppedFor sums log_capturer_sink_dropped_lines_total for one reason.
func droppedFor(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "log_capturer_sink_dropped_lines_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// TestFileQuotas: what File sinks may keep on disk is bounded per namespace
// and in all; a sink beyond a quota is refused with the numbers, other
// namespaces keep their room, and a closed sink gives its room back.
func TestFileQuotas(t *testing.T) {
	const mi = 1 << 20
	f := sinks.NewFactory(sinks.Options{AllowLoopbackEgress: true, FileRoot: t.TempDir(), FileQuotaPerNamespace: 100 * mi, FileQuotaTotal: 150 * mi})
	file := func(path string, size int64, files int) capture.SinkConfig {
		c := sinkConfig("file")
		c.Kind, c.File = capture.SinkFile, &capture.FileConfig{Path: path, MaxSize: size, MaxFiles: files}
		return c
	}
	ctx := context.Background()
	a1, err := f.New("a/p", file("a1.log", 10*mi, 5)) // keeps 60Mi
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.New("a/q", file("a2.log", 10*mi, 4)); !errors.Is(err, sinks.ErrFileQuota) ||
		!strings.Contains(err.Error(), "namespace a would keep up to 110Mi on disk") || !strings.Contains(err.Error(), "quota of 100Mi per namespace") {
		t.Fatalf("a's second sink: %v, want it refused with the numbers", err)
	}
	// The same file again (another pipeline of a) replaces, not adds.
	a1again, err := f.New("a/q", file("a1.log", 10*mi, 5))
	if err != nil {
		t.Fatalf("a second pipeline on a's file: %v", err)
	}
	_, err = f.New("b/p", file("b.log", 10*mi, 9)) // keeps 100Mi, within b's own quota
	if err == nil {
		t.Fatal("b's sink fit although a's 60Mi + b's 100Mi exceed the 150Mi total")
	}
	if !strings.Contains(err.Error(), "total quota of 150Mi") {
		t.Fatalf("b refused with %v, want the total quota named", err)
	}
	if again, err := f.New("b/p", file("b.log", 10*mi, 9)); err == nil {
		_ = again.Close(ctx)
		t.Fatal("refused once, accepted the second time")
	}
	for _, s := range []capture.Sink{a1, a1again} {
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	b, err := f.New("b/p", file("b.log", 10*mi, 9))
	if err != nil {
		t.Fatalf("b still refused after a's sinks closed: %v", err)
	}
	_ = b.Close(ctx)

	// A CapturePolicy's quota replaces the flag's for its namespace, both
	// ways; the total still holds.
	policed := func(path string, size int64, files int, quota int64) capture.SinkConfig {
		c := file(path, size, files)
		c.File.NamespaceQuota, c.File.QuotaPolicy = quota, "small-teams"
		return c
	}
	if _, err := f.New("c/p", policed("c.log", 10*mi, 2, 20*mi)); !errors.Is(err, sinks.ErrFileQuota) ||
		!strings.Contains(err.Error(), `quota of 20Mi per namespace of CapturePolicy "small-teams" (limits.fileQuota)`) {
		t.Fatalf("c's sink over its policy's 20Mi: %v, want it refused naming the policy", err)
	}
	c, err := f.New("c/p", policed("c.log", 10*mi, 11, 140*mi)) // 120Mi: over the flag's 100Mi, within the policy's
	if err != nil {
		t.Fatalf("c's sink within its policy's 140Mi: %v", err)
	}
	if _, err := f.New("d/p", policed("d.log", 10*mi, 3, 140*mi)); err == nil || !strings.Contains(err.Error(), "total quota of 150Mi") {
		t.Fatalf("d's 40Mi beside c's 120Mi: %v, want the total quota named", err)
	}
	_ = c.Close(ctx)
}

// TestFileSinksOfOneNamespaceCannotTouchAnothers replays the attacks of a
// tenant on another's files: a path naming the other's directory, a glob
// in the path, a symbolic link or a FIFO as the final component.
func TestFileSinksOfOneNamespaceCannotTouchAnothers(t *testing.T) {
	root := t.TempDir()
	f := sinks.NewFactory(sinks.Options{AllowLoopbackEgress: true, FileRoot: root})
	file := func(path string, files int) capture.SinkConfig {
		c := sinkConfig("file")
		c.Kind, c.File = capture.SinkFile, &capture.FileConfig{Path: path, MaxSize: 64, MaxFiles: files, Raw: true}
		return c
	}
	// b's live file and one rotated file.
	victim := filepath.Join(root, "team-b", "app")
	if err := os.MkdirAll(filepath.Dir(victim), 0o750); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{victim, victim + ".20261201T000000.000000000Z"} {
		if err := os.WriteFile(p, []byte("b's line\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	// a names b's directory, and a glob, with maxFiles 1, and rotates a lot.
	for _, path := range []string{"team-b/app", "*", "team-b/*"} {
		s := startIn(t, f, "team-a/p", file(path, 1))
		write(t, s, records(50))
		s.stop(t)
	}
	for _, p := range []string{victim, victim + ".20261201T000000.000000000Z"} {
		if b, err := os.ReadFile(p); err != nil || string(b) != "b's line\n" {
			t.Fatalf("b's %s was touched: %q, %v", p, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "team-a", "team-b", "app")); err != nil {
		t.Fatalf("a's file is not under a's own directory: %v", err)
	}
	// The final component a symbolic link to b's file, or a FIFO: refused.
	if err := os.Symlink(victim, filepath.Join(root, "team-a", "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.New("team-a/p", file("link", 1)); err == nil {
		t.Fatal("a File sink opened a symbolic link")
	}
	if err := syscall.Mkfifo(filepath.Join(root, "team-a", "fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := f.New("team-a/p", file("fifo", 1)); err == nil {
		t.Fatalf("a FIFO: %v, want it refused", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "b's line\n" {
		t.Fatalf("b's file changed: %q", b)
	}
}

// TestTheOperatorOwnsIdentityLabels: neither a static label nor a pod label
// can set namespace, pod, container or node, even if it got past the schema.
func TestTheOperatorOwnsIdentityLabels(t *testing.T) {
	e := newEnv(t)
	rcv, srv := newReceiver(t)
	c := lokiConfig(srv.URL)
	c.Loki.MetadataLabels = []string{"namespace", "container"}
	c.Loki.StaticLabels = map[string]string{"namespace": "kube-system", "pod": "forged", "cluster": "test"}
	c.Loki.PodLabelsAsLabels = []string{"namespace", "container", "app"}
	s := e.start(t, c)
	recs := records(3)
	for _, r := range recs {
		r.Labels = map[string]string{"namespace": "kube-system", "container": "forged", "app": "web"}
	}
	write(t, s, recs)
	s.stop(t)
	got := rcv.Entries()
	if len(got) != 3 {
		t.Fatalf("%d entries, want 3", len(got))
	}
	for _, en := range got {
		if en.Labels["namespace"] != "shop" || en.Labels["container"] != "main" || en.Labels["app"] != "web" || en.Labels["cluster"] != "test" {
			t.Fatalf("labels %v: the record's own namespace and container must win", en.Labels)
		}
		if _, ok := en.Labels["pod"]; ok || !strings.HasPrefix(en.Metadata["pod"], "web-") {
			t.Fatalf("pod label %q, metadata %v: a static label set the pod", en.Labels["pod"], en.Metadata)
		}
	}
}
