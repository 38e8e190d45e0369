package sinks

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/log-capturer/log-capturer/capture"
)

// BenchmarkLokiEncode measures the protobuf encoder (and snappy) in steady
// state: MB/s of log lines and allocations per line (b.N counts lines).
func BenchmarkLokiEncode(b *testing.B) {
	for _, size := range []int{150, 1024} {
		for _, withSnappy := range []bool{false, true} {
			b.Run(fmt.Sprintf("line=%dB/snappy=%v", size, withSnappy), func(b *testing.B) {
				enc := newLokiEncoder(&capture.LokiConfig{MetadataLabels: []string{"namespace", "container"},
					PodLabelsAsLabels: []string{"app"}, StaticLabels: map[string]string{"cluster": "bench"}})
				const batchLen = 1000
				batch := make([]*capture.Record, batchLen)
				t0 := time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)
				labels := []map[string]string{{"app": "a"}, {"app": "b"}, {"app": "c"}, {"app": "d"}}
				for i := range batch {
					batch[i] = &capture.Record{Time: t0.Add(time.Duration(i) * time.Microsecond), Namespace: "shop",
						Pod: fmt.Sprintf("web-%d", i%8), Container: "main", Node: "node-1", Labels: labels[i%4],
						Line: strings.Repeat("x", size)}
				}
				var out []byte
				enc.encodeProto(batch) // warm the caches and buffers
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for n := 0; n < b.N; n += batchLen {
					body := enc.encodeProto(batch)
					if withSnappy {
						out = s2.EncodeSnappy(out[:cap(out)], body)
					}
				}
			})
		}
	}
}
