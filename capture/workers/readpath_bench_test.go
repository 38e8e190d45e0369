package workers

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/log-capturer/log-capturer/capture"
)

// BenchmarkReadPath measures the per-line cost of turning a pods/log stream
// into records: reading, timestamp parsing, resume bookkeeping, metrics and
// the position tracking of one sink's acknowledgements.
func BenchmarkReadPath(b *testing.B) {
	for _, size := range []int{150, 1024} {
		b.Run(fmt.Sprintf("line=%dB", size), func(b *testing.B) {
			p, err := newPipeline(deps{log: logr.Discard()}, capture.PipelineConfig{Namespace: "ns", Name: "bench",
				MaxStreams: 1, RotationInterval: time.Minute}, nil, newTracker(), &pipelineStats{})
			if err != nil {
				b.Fatal(err)
			}
			const lines = 4096
			var body bytes.Buffer
			ts := time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)
			payload := bytes.Repeat([]byte("x"), size)
			for i := range lines {
				body.WriteString(ts.Add(time.Duration(i) * time.Microsecond).Format(time.RFC3339Nano))
				body.WriteByte(' ')
				body.Write(payload)
				body.WriteByte('\n')
			}
			stream := body.Bytes()
			done := make(chan struct{})
			go func() {
				// As the fan-out and one sink do: track, then acknowledge.
				for r := range p.records {
					p.handedOff(r)
					p.tracker.track(r, 1)
					r.Ack()
				}
				close(done)
			}()
			c := &container{namespace: "ns", pod: "pod", name: "main", node: "node"}
			b.SetBytes(int64(len(stream)) / lines)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += lines {
				res := sliceResult{}
				if err := p.read(context.Background(), bytes.NewReader(stream), c, &res, true); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			close(p.records)
			<-done
			// b.N counts lines: allocs/op and ns/op are per line.
		})
	}
}
