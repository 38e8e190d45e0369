package workers_test

import (
	"fmt"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/sinks"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

var benchOnce sync.Once

// TestMain stops the control plane a benchmark started; the Ginkgo suite
// starts and stops its own.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchStarted {
		AfterSuiteStop()
	}
	os.Exit(code)
}

var benchStarted bool

// AfterSuiteStop stops what startEnv started outside the Ginkgo suite.
func AfterSuiteStop() {
	cancel()
	<-cacheDone
	_ = kubelet.Close()
	_ = testEnv.Stop()
}

// prefill creates a namespace with streams pods whose logs already hold
// n lines in all (150 B each), and returns it with the lines per pod.
func prefill(n, streams int) (string, int) {
	ns := newNamespace()
	per := n/streams + 1
	ts := time.Now().Add(-time.Minute)
	for _, p := range createPods(ns, streams) {
		c := kubelet.Container(ns, p, "main")
		for i := range per {
			c.Write(ts.Add(time.Duration(i)*time.Microsecond), fmt.Sprintf("%s seq=%d %0120d", p, i, i))
		}
	}
	return ns, per
}

// BenchmarkPipelineToLoki measures lines per second from the simulated
// kubelet through the API server and a Loki sink (protobuf and snappy) into a
// Loki receiver on loopback, with 10 streams.
func BenchmarkPipelineToLoki(b *testing.B) {
	benchOnce.Do(func() {
		gomega.RegisterFailHandler(func(message string, _ ...int) { panic(message) })
		startEnv()
		benchStarted = true
	})
	rcv := lokireceiver.New()
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	factory := sinks.NewFactory(sinks.Options{AllowLoopbackEgress: true, FileRoot: b.TempDir()})
	const streams = 10
	ns, per := prefill(b.N, streams)
	h := startHarness()
	h.factory = func(p string, c capture.SinkConfig) capture.Sink {
		s, err := factory.New(p, c)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	cfg := pipelineConfig(ns, "bench", streams, time.Minute)
	cfg.Sinks = []capture.SinkConfig{{Name: "loki", Kind: capture.SinkLoki, BatchMaxBytes: 1 << 20,
		BatchMaxWait: 100 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
		BufferMaxBytes: 16 << 20, WhenFull: sinks.Block,
		Loki: &capture.LokiConfig{URL: srv.URL, MetadataLabels: []string{"namespace", "container"}}}}
	b.ResetTimer()
	start := time.Now()
	if err := h.mgr.Apply(ctx, types.NamespacedName{Namespace: ns, Name: "bench"}, cfg); err != nil {
		b.Fatal(err)
	}
	for rcv.Len() < per*streams {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(per*streams)/elapsed.Seconds(), "lines/s")
	h.stop()
}

// BenchmarkCapture measures lines per second from the simulated kubelet
// through the real API server's pods/log proxy into a sink, with 1, 10 and
// 100 concurrent streams. b.N is the number of lines.
func BenchmarkCapture(b *testing.B) {
	benchOnce.Do(func() {
		gomega.RegisterFailHandler(func(message string, _ ...int) { panic(message) })
		startEnv()
		benchStarted = true
	})
	for _, streams := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			ns, per := prefill(b.N, streams)
			want := per * streams
			sink := newSeqSink()
			h := startHarness()
			h.factory = func(string, capture.SinkConfig) capture.Sink { return sink }
			key := types.NamespacedName{Namespace: ns, Name: "bench"}
			b.ResetTimer()
			start := time.Now()
			if err := h.mgr.Apply(ctx, key, pipelineConfig(ns, "bench", streams, time.Minute)); err != nil {
				b.Fatal(err)
			}
			for {
				if d, _, _ := sink.counts(); d >= int64(want) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(want)/elapsed.Seconds(), "lines/s")
			_, dup, lost := sink.counts()
			if dup != 0 || lost != 0 {
				b.Fatalf("lost %d, duplicated %d", lost, dup)
			}
			h.stop()
		})
	}
}
