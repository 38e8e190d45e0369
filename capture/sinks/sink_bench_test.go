package sinks_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/grpc"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/sinks"
)

// discardOTLP answers every gRPC export with success (after gRPC decoded
// it, which the benchmark's CPU includes).
type discardOTLP struct {
	plogotlp.UnimplementedGRPCServer
}

func (*discardOTLP) Export(context.Context, plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	return plogotlp.NewExportResponse(), nil
}

// BenchmarkSinkToLocalReceiver sends b.N lines of 150 bytes through each
// network sink (queue, batches of 1 MiB, encoding, compression, the
// loopback connection) to a receiver in the same process, and reports
// lines/s and the process's CPU seconds per million lines. The receivers
// of Loki and OTLP/HTTP discard what they read; over gRPC the receiver
// decodes the protobuf; Kafka's is franz-go's kfake, which decodes and
// keeps every batch (zstd); Elasticsearch's and OpenSearch's decompress
// the bulk body and answer an item per document; S3's is gofakes3, which keeps every
// object in memory: their work is in the CPU figure.
func BenchmarkSinkToLocalReceiver(b *testing.B) {
	discard := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	// bulkOK answers every item of a bulk request with 201, reading no more
	// than its lines; as Elasticsearch with its product header, else as
	// OpenSearch.
	bulkOK := func(product string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if product == "elasticsearch" {
				w.Header().Set("X-Elastic-Product", "Elasticsearch")
			}
			bulkAnswerAll(w, r)
		}
	}
	for _, kind := range []string{"loki", "otlp-http", "otlp-grpc", "kafka", "elasticsearch", "opensearch", "s3"} {
		b.Run(kind, func(b *testing.B) {
			var c capture.SinkConfig
			switch kind {
			case "loki":
				srv := httptest.NewServer(discard)
				defer srv.Close()
				c = lokiConfig(srv.URL)
			case "otlp-http":
				srv := httptest.NewServer(discard)
				defer srv.Close()
				c = otlpConfig(srv.URL, false)
			case "otlp-grpc":
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				gs := grpc.NewServer()
				plogotlp.RegisterGRPCServer(gs, &discardOTLP{})
				go func() { _ = gs.Serve(l) }()
				defer gs.Stop()
				c = otlpConfig("http://"+l.Addr().String(), true)
			case "kafka":
				kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, "logs-shop"))
				if err != nil {
					b.Fatal(err)
				}
				defer kc.Close()
				c = kafkaConfig(kc.ListenAddrs())
			case "elasticsearch":
				srv := httptest.NewServer(bulkOK(kind))
				defer srv.Close()
				c = esConfig(srv.URL)
			case "opensearch":
				srv := httptest.NewServer(bulkOK(kind))
				defer srv.Close()
				c = osConfig(srv.URL)
			case "s3":
				c = s3Config(newS3Server(b).url)
			}
			benchSink(b, c)
		})
	}
}

// bulkAnswerAll reads a bulk request (gzip or not) and answers each of
// its items 201.
func bulkAnswerAll(w http.ResponseWriter, r *http.Request) {
	body := io.Reader(r.Body)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	raw, _ := io.ReadAll(body)
	n := bytes.Count(raw, []byte{'\n'}) / 2
	out := append(make([]byte, 0, 32+n*26), `{"errors":false,"items":[`...)
	for i := range n {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"create":{"status":201}}`...)
	}
	_, _ = w.Write(append(out, "]}"...))
}

// benchSink writes b.N lines of 150 bytes to the sink of c and reports
// lines/s and CPU seconds per million lines once all were sent.
func benchSink(b *testing.B, c capture.SinkConfig) {
	b.Helper()
	c.BatchMaxBytes, c.BatchMaxWait = 1<<20, 100*time.Millisecond
	f := sinks.NewFactory(sinks.Options{AllowLoopbackEgress: true, RequestTimeout: 10 * time.Second})
	s, err := f.New("bench/p", c)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	recs := make([]*capture.Record, 4096)
	t0 := time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)
	labels := []map[string]string{{"app": "a"}, {"app": "b"}, {"app": "c"}, {"app": "d"}}
	for i := range recs {
		recs[i] = &capture.Record{Time: t0.Add(time.Duration(i) * time.Microsecond), Namespace: "shop",
			Pod: fmt.Sprintf("web-%d", i%8), Container: "main", Node: "node-1", Labels: labels[i%4],
			Line: fmt.Sprintf("%06d ", i) + strings.Repeat("x", 143)}
	}
	b.SetBytes(150)
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	start := time.Now()
	b.ResetTimer()
	for i := range b.N {
		if err := s.Write(ctx, recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
	}
	for s.(capture.StatsReporter).Stats().SentLines < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	wall, cpu := time.Since(start), cpuTime(b)-cpu0
	b.ReportMetric(float64(b.N)/wall.Seconds(), "lines/s")
	b.ReportMetric(cpu.Seconds()*1e6/float64(b.N), "cpu-s/Mlines")
	closeCtx, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	if err := s.Close(closeCtx); err != nil {
		b.Fatal(err)
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
