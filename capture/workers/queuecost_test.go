package workers

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/sinks"
)

// queuedHeapPerByte fills a real sink's queue (its sender not running, as
// when the destination is down; DropNewest so that writes never block) with
// records made as the read path makes them, and returns the heap they hold
// per byte the queue counts: 1.0 means the queue's bound is the memory it
// costs.
func queuedHeapPerByte(t testing.TB, lineSize int, bufferBytes int64) (ratio float64, queued int64, records int) {
	f := sinks.NewFactory(sinks.Options{AllowLoopbackEgress: true, Stdout: io.Discard, FileRoot: t.TempDir()})
	s, err := f.New("ns/p", capture.SinkConfig{Name: "out", Kind: capture.SinkStdout, BatchMaxBytes: 1 << 20,
		BatchMaxWait: time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, BufferMaxBytes: bufferBytes,
		WhenFull: sinks.DropNewest, Stdout: &capture.StdoutConfig{}})
	if err != nil {
		t.Fatal(err)
	}
	tr := newTracker()
	line := strings.Repeat("x", lineSize)
	ns, pod, ctr, node := "shop", "web-7d9f8c6b5d-x2x9q", "app", "node-1"
	labels := map[string]string{"app": "web"}
	ts := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	key := containerKey{uid: "u", name: ctr}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var pos Position
	stats := s.(capture.StatsReporter)
	for i := 0; ; i++ {
		pos.deliver(ts.Add(time.Duration(i) * time.Microsecond))
		// As the read path does: one tracked record, its line a string of its own.
		r := &tracked{Record: capture.Record{Time: ts, Line: string([]byte(line)), Namespace: ns, Pod: pod,
			Container: ctr, Node: node, Labels: labels}, key: key, pos: pos}
		r.Acker = r
		tr.track(r, 1)
		if err := s.Write(context.Background(), &r.Record); err != nil {
			t.Fatal(err)
		}
		if st := stats.Stats(); st.DroppedLines > 0 {
			records = i
			queued = st.QueueBytes
			break
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = s.Close(ctx)
	runtime.KeepAlive(tr)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(queued), queued, records
}

// TestQueuedRecordsAreCountedAtTheirCost checks that a sink's buffer bound
// is the memory its records cost, within 50%, for short and long lines.
func TestQueuedRecordsAreCountedAtTheirCost(t *testing.T) {
	for _, size := range []int{20, 150, 1024, 16 << 10} {
		t.Run(fmt.Sprintf("line=%dB", size), func(t *testing.T) {
			ratio, queued, n := queuedHeapPerByte(t, size, 16<<20)
			t.Logf("%d records of %d B queued as %d bytes: %.2f heap bytes per queued byte", n, size, queued, ratio)
			if ratio > 1.5 || ratio < 0.5 {
				t.Fatalf("%.2f heap bytes per queued byte; the queue's count must track the heap", ratio)
			}
		})
	}
}

// BenchmarkQueuedHeapPerByte prints the heap bytes per queued byte of a
// sink's buffer (goal ≤ 1.5), for short and long lines.
func BenchmarkQueuedHeapPerByte(b *testing.B) {
	for _, size := range []int{20, 150, 1024} {
		b.Run(fmt.Sprintf("line=%dB", size), func(b *testing.B) {
			var ratio float64
			for range b.N {
				ratio, _, _ = queuedHeapPerByte(b, size, 64<<20)
			}
			b.ReportMetric(ratio, "heap/queued")
		})
	}
}
