package workers

import (
	"bytes"
	"context"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/log-capturer/log-capturer/capture"
)

// readAll runs the read path of a pipeline with the given line cap over
// body and returns the records it produced.
func readAll(t *testing.T, maxLine int, body io.Reader) ([]capture.Record, *pipeline) {
	t.Helper()
	p, err := newPipeline(deps{log: logr.Discard()}, capture.PipelineConfig{Namespace: "ns", Name: "cap",
		MaxStreams: 1, RotationInterval: time.Minute, MaxLineBytes: maxLine}, nil, newTracker(), &pipelineStats{})
	if err != nil {
		t.Fatal(err)
	}
	var got []capture.Record
	done := make(chan struct{})
	go func() {
		defer close(done)
		for r := range p.records {
			p.handedOff(r)
			got = append(got, r.Record)
		}
	}()
	c := &container{namespace: "ns", pod: "pod", name: "main", node: "node"}
	if err := p.read(context.Background(), body, c, &sliceResult{}, true); err != nil {
		t.Fatal(err)
	}
	close(p.records)
	<-done
	return got, p
}

const ts = "2026-12-01T10:00:00.000000001Z "

func TestLinesAreCutToTheMaximumSize(t *testing.T) {
	long := strings.Repeat("é", 3<<20) // 6 MiB of two-byte characters
	tests := []struct {
		name      string
		maxLine   int
		body      string
		want      []string
		truncated int64
	}{
		{"short lines pass", 1 << 10, ts + "a\n" + ts + "b\n", []string{"a", "b"}, 0},
		{"exactly the maximum passes", 1 << 10, ts + strings.Repeat("x", 1<<10) + "\n", []string{strings.Repeat("x", 1<<10)}, 0},
		{"one byte more is cut", 1 << 10, ts + strings.Repeat("x", 1<<10+1) + "\n",
			[]string{strings.Repeat("x", 1<<10) + capture.TruncatedMarker}, 1},
		{"a long line is cut at a character, the next line is whole", 1 << 20, ts + long + "\n" + ts + "next\n",
			[]string{long[:1<<20] + capture.TruncatedMarker, "next"}, 1},
		{"odd cap: the cut does not split a character", 1<<20 + 1, ts + long + "\n",
			[]string{long[:1<<20] + capture.TruncatedMarker}, 1},
		{"invalid UTF-8 is cut at the byte", 1 << 10, ts + strings.Repeat("\xff", 5000) + "\n",
			[]string{strings.Repeat("\xff", 1<<10) + capture.TruncatedMarker}, 1},
		{"a cut stream's unterminated tail is not emitted", 1 << 10, ts + "a\n" + ts + strings.Repeat("x", 10000),
			[]string{"a"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, p := readAll(t, tc.maxLine, strings.NewReader(tc.body))
			if len(got) != len(tc.want) {
				t.Fatalf("%d records, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if got[i].Line != tc.want[i] {
					t.Errorf("record %d: %d bytes ending %q, want %d bytes ending %q", i, len(got[i].Line),
						tail(got[i].Line), len(tc.want[i]), tail(tc.want[i]))
				}
			}
			if n := p.stats.truncatedLines.Load(); n != tc.truncated {
				t.Errorf("%d lines counted as truncated, want %d", n, tc.truncated)
			}
		})
	}
}

func tail(s string) string { return s[max(0, len(s)-40):] }

// endless is a reader of n bytes of 'x' after a timestamp, then rest: a
// container that writes a huge line, made without holding it in memory.
type endless struct {
	prefix, rest []byte
	n            int
}

func (e *endless) Read(b []byte) (int, error) {
	switch {
	case len(e.prefix) > 0:
		k := copy(b, e.prefix)
		e.prefix = e.prefix[k:]
		return k, nil
	case e.n > 0:
		k := min(len(b), e.n)
		for i := range k {
			b[i] = 'x'
		}
		e.n -= k
		return k, nil
	case len(e.rest) > 0:
		k := copy(b, e.rest)
		e.rest = e.rest[k:]
		return k, nil
	}
	return 0, io.EOF
}

// TestAHugeLineCostsNoMoreThanTheCap reads a 256 MiB line, unterminated and
// then terminated, and checks that the heap never grows by more than a few
// times the 1 MiB cap while it does.
func TestAHugeLineCostsNoMoreThanTheCap(t *testing.T) {
	for _, tc := range []struct {
		name string
		rest string
		want int
	}{
		{"unterminated (a cut stream): nothing emitted", "", 0},
		{"terminated: cut, and the next line whole", "\n" + ts + "after\n", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GC()
			var base runtime.MemStats
			runtime.ReadMemStats(&base)
			var peak atomic.Uint64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				var m runtime.MemStats
				for {
					runtime.ReadMemStats(&m)
					if m.HeapInuse > peak.Load() {
						peak.Store(m.HeapInuse)
					}
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			})
			got, p := readAll(t, 1<<20, &endless{prefix: []byte(ts), n: 256 << 20, rest: []byte(tc.rest)})
			close(stop)
			wg.Wait()
			growth := int64(peak.Load()) - int64(base.HeapInuse)
			t.Logf("a 256 MiB line: heap in use grew by at most %.1f MiB", float64(growth)/(1<<20))
			if growth > 16<<20 {
				t.Fatalf("the heap grew by %d MiB reading a 256 MiB line with a 1 MiB cap", growth>>20)
			}
			if len(got) != tc.want {
				t.Fatalf("%d records, want %d", len(got), tc.want)
			}
			if tc.want > 0 {
				if len(got[0].Line) != 1<<20+len(capture.TruncatedMarker) || !bytes.HasSuffix([]byte(got[0].Line), []byte(capture.TruncatedMarker)) {
					t.Fatalf("the huge line came out as %d bytes", len(got[0].Line))
				}
				if got[1].Line != "after" || p.stats.truncatedLines.Load() != 1 {
					t.Fatalf("next line %q, %d truncated", got[1].Line, p.stats.truncatedLines.Load())
				}
			}
		})
	}
}
