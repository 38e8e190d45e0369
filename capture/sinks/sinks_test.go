package sinks_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/sinks"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
	"github.com/log-capturer/log-capturer/test/otlpreceiver"
)

// env is a Factory with fresh metrics and a record of rejections.
type env struct {
	factory *sinks.Factory
	reg     *prometheus.Registry
	root    string
	stdout  *bytes.Buffer

	mu       sync.Mutex
	rejected []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{reg: prometheus.NewRegistry(), root: t.TempDir(), stdout: &bytes.Buffer{}}
	e.factory = sinks.NewFactory(sinks.Options{AllowLoopbackEgress: true, Stdout: e.stdout, FileRoot: e.root,
		RequestTimeout: 500 * time.Millisecond,
		OnReject: func(_, sink, msg string) {
			e.mu.Lock()
			e.rejected = append(e.rejected, sink+": "+msg)
			e.mu.Unlock()
		}})
	e.reg.MustRegister(e.factory)
	return e
}

// running is a sink with its sender running, as a pipeline runs it.
type running struct {
	capture.Sink
	cancel context.CancelFunc
	done   chan struct{}
}

func (e *env) start(t *testing.T, c capture.SinkConfig) *running {
	t.Helper()
	return startIn(t, e.factory, "ns/p", c)
}

// stop closes the sink, letting it drain for up to 10 s.
func (r *running) stop(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
	r.cancel()
	<-r.done
}

// newReceiver serves a Loki receiver on loopback until the test ends; hanging
// requests are released before the server closes.
func newReceiver(t *testing.T) (*lokireceiver.Receiver, *httptest.Server) {
	t.Helper()
	rcv := lokireceiver.New()
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	t.Cleanup(rcv.Close)
	return rcv, srv
}

func sinkConfig(name string) capture.SinkConfig {
	return capture.SinkConfig{Name: name, BatchMaxBytes: 64 << 10, BatchMaxWait: 20 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, BufferMaxBytes: 8 << 20, WhenFull: sinks.Block}
}

func lokiConfig(url string) capture.SinkConfig {
	c := sinkConfig("loki")
	c.Kind = capture.SinkLoki
	c.Loki = &capture.LokiConfig{URL: url, TenantID: "team-a", MetadataLabels: []string{"namespace", "container"},
		PodLabelsAsLabels: []string{"app", "app.kubernetes.io/name"}, StaticLabels: map[string]string{"cluster": "test"},
		Credentials: capture.Credentials{Username: "u", Password: "p"}}
	return c
}

var base = time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)

// records makes n records spread over three containers, numbered per container.
func records(n int) []*capture.Record {
	out := make([]*capture.Record, n)
	for i := range out {
		c := i % 3
		out[i] = &capture.Record{Time: base.Add(time.Duration(i) * time.Millisecond), Namespace: "shop",
			Pod: fmt.Sprintf("web-%d", c), Container: "main", Node: "node-1",
			Labels: map[string]string{"app": "web", "app.kubernetes.io/name": "shop"},
			Line:   fmt.Sprintf("web-%d seq=%d", c, i/3)}
	}
	return out
}

func write(t *testing.T, s capture.Sink, recs []*capture.Record) {
	t.Helper()
	for _, r := range recs {
		if err := s.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
}

// exactlyOnce checks every line of recs arrived once, in order per pod.
func exactlyOnce(t *testing.T, recs []*capture.Record, got []lokireceiver.Entry) {
	t.Helper()
	want := map[string][]string{}
	for _, r := range recs {
		want[r.Pod] = append(want[r.Pod], r.Line)
	}
	have := map[string][]string{}
	for _, e := range got {
		have[e.Metadata["pod"]] = append(have[e.Metadata["pod"]], e.Line)
	}
	for pod, lines := range want {
		if fmt.Sprint(have[pod]) != fmt.Sprint(lines) {
			t.Fatalf("%s: got %d lines, want %d exactly once in order", pod, len(have[pod]), len(lines))
		}
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLokiDeliversEveryLineOnceInEachEncoding(t *testing.T) {
	for _, enc := range []string{"protobuf", "json"} {
		t.Run(enc, func(t *testing.T) {
			e := newEnv(t)
			rcv, srv := newReceiver(t)
			c := lokiConfig(srv.URL)
			c.Loki.JSON = enc == "json"
			s := e.start(t, c)
			recs := records(3000)
			write(t, s, recs)
			s.stop(t)
			if p := rcv.Problems(); len(p) > 0 {
				t.Fatalf("protocol problems: %v", p)
			}
			got := rcv.Entries()
			exactlyOnce(t, recs, got)
			wantLabels := map[string]string{"cluster": "test", "namespace": "shop", "container": "main", "app": "web", "app_kubernetes_io_name": "shop"}
			if fmt.Sprint(got[0].Labels) != fmt.Sprint(wantLabels) {
				t.Errorf("labels = %v, want %v", got[0].Labels, wantLabels)
			}
			if got[0].Metadata["node"] != "node-1" || got[0].Tenant != "team-a" {
				t.Errorf("metadata = %v, tenant = %q", got[0].Metadata, got[0].Tenant)
			}
			if u, p, ok := (&http.Request{Header: rcv.Headers()[0]}).BasicAuth(); !ok || u != "u" || p != "p" {
				t.Errorf("basic auth = %q %q %v", u, p, ok)
			}
			if got := sum(t, e.reg, "log_capturer_sink_sent_lines_total"); got != 3000 {
				t.Errorf("sent lines metric = %v", got)
			}
		})
	}
}

// sum adds up every series of a counter or gauge.
func sum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func TestLokiRecoversFromFaultsWithoutLossOrDuplicates(t *testing.T) {
	tests := []struct {
		name        string
		fault       lokireceiver.Fault
		times       int
		minDuration time.Duration
	}{
		{"500", lokireceiver.Fault{Status: 500, Body: "ingester down"}, 4, 0},
		{"429 with Retry-After", lokireceiver.Fault{Status: 429, RetryAfter: "1", Body: "rate limited"}, 2, 2 * time.Second},
		{"503", lokireceiver.Fault{Status: 503}, 3, 0},
		{"hang", lokireceiver.Fault{Hang: true}, 2, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			rcv, srv := newReceiver(t)
			c := lokiConfig(srv.URL)
			c.MaxBackoff = 5 * time.Second
			rcv.FailNext(tc.times, tc.fault)
			s := e.start(t, c)
			start := time.Now()
			recs := records(600)
			write(t, s, recs)
			eventually(t, "all lines", func() bool { return rcv.Len() >= len(recs) })
			s.stop(t)
			exactlyOnce(t, recs, rcv.Entries())
			if rcv.Len() != len(recs) {
				t.Fatalf("%d entries for %d lines: duplicates", rcv.Len(), len(recs))
			}
			if d := time.Since(start); d < tc.minDuration {
				t.Errorf("delivered after %v, before the server allowed (%v)", d, tc.minDuration)
			}
			st := s.Sink.(capture.StatsReporter).Stats()
			if st.FailedBatches < int64(tc.times) || st.Retries < int64(tc.times) || st.DroppedLines != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestLokiRejectedBatchIsCountedAndReported(t *testing.T) {
	e := newEnv(t)
	rcv, srv := newReceiver(t)
	rcv.FailNext(1, lokireceiver.Fault{Status: 400, Body: "entry too far behind"})
	s := e.start(t, lokiConfig(srv.URL))
	first := records(30)
	write(t, s, first)
	eventually(t, "the rejection", func() bool { return s.Sink.(capture.StatsReporter).Stats().DroppedLines == 30 })
	// A rejection is its own outcome: counted as rejected, not as a sink
	// that keeps failing and retrying.
	if st := s.Sink.(capture.StatsReporter).Stats(); st.RejectedLines != 30 || !st.FailingSince.IsZero() ||
		st.LastRejected.IsZero() || !strings.Contains(st.LastRejection, "entry too far behind") {
		t.Fatalf("after a rejection: rejected %d, failing since %v, last rejection %q", st.RejectedLines, st.FailingSince, st.LastRejection)
	}
	second := records(60)[30:]
	write(t, s, second)
	s.stop(t)
	if rcv.Len() != 30 {
		t.Fatalf("after a rejected batch the next ones must arrive: got %d entries", rcv.Len())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.rejected) != 1 || !strings.Contains(e.rejected[0], "entry too far behind") || !strings.Contains(e.rejected[0], "400") {
		t.Fatalf("rejections reported: %q", e.rejected)
	}
}

// startFailingLoki runs a Loki sink with the whenFull policy and small
// buffer and batch bounds, against a receiver that answers 500 to every push.
func startFailingLoki(t *testing.T, policy string, bufferBytes, batchBytes int64) (*lokireceiver.Receiver, *running, capture.SinkConfig) {
	t.Helper()
	e := newEnv(t)
	rcv, srv := newReceiver(t)
	rcv.FailAll(lokireceiver.Fault{Status: 500})
	c := lokiConfig(srv.URL)
	c.BufferMaxBytes = bufferBytes
	c.BatchMaxBytes = batchBytes
	c.WhenFull = policy
	return rcv, e.start(t, c), c
}

func TestWhenFullPolicies(t *testing.T) {
	tests := []struct {
		policy      string
		wantBlocked bool
		wantDropped bool
	}{
		{sinks.Block, true, false},
		{sinks.DropNewest, false, true},
		{sinks.DropOldest, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.policy, func(t *testing.T) {
			rcv, s, c := startFailingLoki(t, tc.policy, 16<<10, 4<<10)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			blocked := false
			for _, r := range records(2000) {
				if err := s.Write(ctx, r); err != nil {
					blocked = true
					break
				}
			}
			st := s.Sink.(capture.StatsReporter).Stats()
			if blocked != tc.wantBlocked || (st.DroppedLines > 0) != tc.wantDropped {
				t.Fatalf("blocked=%v dropped=%d", blocked, st.DroppedLines)
			}
			if st.QueueBytes > c.BufferMaxBytes {
				t.Fatalf("queue holds %d bytes, over its bound %d", st.QueueBytes, c.BufferMaxBytes)
			}
			rcv.Recover()
			s.stop(t)
			if tc.wantDropped && int64(rcv.Len())+st.DroppedLines < 2000 {
				t.Fatalf("delivered %d + dropped %d < 2000 written: a line vanished uncounted", rcv.Len(), st.DroppedLines)
			}
		})
	}
}

// TestIsolationDeadSinksDoNotSlowTheOthers runs one live and one hanging
// sink of each network kind (Loki, OTLP over HTTP and gRPC, Kafka,
// Elasticsearch, OpenSearch, S3) side by side: the hanging ones fill their own
// queues and drop, the live ones keep the rate.
func TestIsolationDeadSinksDoNotSlowTheOthers(t *testing.T) {
	e := newEnv(t)
	type sink struct {
		name string
		s    *running
		len  func() int
	}
	var live, dead []sink
	for _, hanging := range []bool{false, true} {
		rcv, srv := newReceiver(t)
		c := lokiConfig(srv.URL)
		c.Name = "loki"
		kinds := []sink{{name: "loki", len: rcv.Len}}
		cfgs := []capture.SinkConfig{c}
		if hanging {
			rcv.FailAll(lokireceiver.Fault{Hang: true})
			defer rcv.Recover()
		}
		for _, p := range otlpProtocols {
			orcv, url := otlpServer(t, p.grpc)
			oc := otlpConfig(url, p.grpc)
			oc.Name = "otlp-" + p.name
			if hanging {
				orcv.FailAll(otlpreceiver.Fault{Hang: true})
				defer orcv.Recover()
			}
			kinds = append(kinds, sink{name: oc.Name, len: orcv.Len})
			cfgs = append(cfgs, oc)
		}
		var kc capture.SinkConfig
		if hanging {
			// A broker that takes connections and never answers.
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			go func() {
				for {
					conn, err := l.Accept()
					if err != nil {
						return
					}
					t.Cleanup(func() { conn.Close() })
				}
			}()
			kc = kafkaConfig([]string{l.Addr().String()})
		} else {
			kc = kafkaConfig(newKafka(t, 1).ListenAddrs())
		}
		kinds = append(kinds, sink{name: "kafka"})
		cfgs = append(cfgs, kc)
		bulk, bsrv := newBulkReceiver(t)
		if hanging {
			bulk.request = func(int) int { return -1 }
		}
		kinds = append(kinds, sink{name: "elasticsearch", len: func() int { return len(bulk.stored()) }})
		cfgs = append(cfgs, esConfig(bsrv.URL))
		obulk, osrv := newOpenSearchReceiver(t)
		if hanging {
			obulk.request = func(int) int { return -1 }
		}
		kinds = append(kinds, sink{name: "opensearch", len: func() int { return len(obulk.stored()) }})
		cfgs = append(cfgs, osConfig(osrv.URL))
		s3srv := newS3Server(t)
		if hanging {
			s3srv.fault = func(int) int { return -1 }
		}
		s3c := s3Config(s3srv.url)
		s3c.BatchMaxBytes = 64 << 10
		kinds = append(kinds, sink{name: "s3"})
		cfgs = append(cfgs, s3c)
		for i := range kinds {
			if hanging {
				cfgs[i].Name, cfgs[i].WhenFull, cfgs[i].BufferMaxBytes = "dead-"+cfgs[i].Name, sinks.DropNewest, 64<<10
			}
			kinds[i].s = e.start(t, cfgs[i])
			if kinds[i].len == nil {
				// Kafka and S3: what the destination acknowledged.
				st := kinds[i].s.Sink.(capture.StatsReporter)
				kinds[i].len = func() int { return int(st.Stats().SentLines) }
			}
		}
		if hanging {
			dead = kinds
		} else {
			live = kinds
		}
	}
	all := append(append([]sink(nil), live...), dead...)

	// Like a pipeline's fan-out: every record to every sink, 1000 lines/s, for 30 s.
	const rate, seconds = 1000, 30
	recs := records(rate * seconds)
	perSecond := make([][]int, len(live))
	for i := range perSecond {
		perSecond[i] = make([]int, seconds)
	}
	start := time.Now()
	for i, r := range recs {
		for _, k := range all {
			if err := k.s.Write(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
		if i%rate == rate-1 {
			sec := i / rate
			for j, k := range live {
				perSecond[j][sec] = k.len()
			}
			time.Sleep(time.Until(start.Add(time.Duration(sec+1) * time.Second)))
		}
	}
	for j, k := range live {
		eventually(t, "the live "+k.name+" sink", func() bool { return k.len() == len(recs) })
		// Over every 5 seconds, at least half of what was written: a dead
		// sink that held the fan-out would stall the live ones for its whole
		// timeout, while one slow second of a loaded machine (a batch
		// uploaded late) passes.
		const window = 5
		for i := window + 1; i < seconds; i++ {
			if got := perSecond[j][i] - perSecond[j][i-window]; got < rate*window/2 {
				t.Fatalf("seconds %d to %d: the live %s sink delivered %d lines, want about %d (delivered by each second: %v)", i-window, i, k.name, got, rate*window, perSecond[j])
			}
		}
	}
	for _, k := range dead {
		if st := k.s.Sink.(capture.StatsReporter).Stats(); st.DroppedLines == 0 || k.len() != 0 {
			t.Fatalf("the hanging %s sink's queue should have filled and dropped: dropped %d, delivered %d", k.name, st.DroppedLines, k.len())
		}
	}
	for _, k := range live {
		k.s.stop(t)
	}
	for _, k := range dead {
		k.s.cancel()
		k.s.stop(t)
	}
}

func TestBadInputReachesEverySinkIntact(t *testing.T) {
	lines := []string{"", "nul\x00byte", "invalid \xff\xfe utf8", "ünïcödé 🎉", strings.Repeat("a", 1<<20), `"quoted" \ json`}
	recs := make([]*capture.Record, len(lines))
	for i, l := range lines {
		recs[i] = &capture.Record{Time: base.Add(time.Duration(i)), Namespace: "ns", Pod: "p", Container: "c", Line: l}
	}
	e := newEnv(t)

	rcv, srv := newReceiver(t)
	loki := e.start(t, lokiConfig(srv.URL))
	raw := sinkConfig("raw")
	raw.Kind, raw.File = capture.SinkFile, &capture.FileConfig{Path: "raw.log", Raw: true, MaxSize: 64 << 20, MaxFiles: 2}
	js := sinkConfig("json")
	js.Kind, js.File = capture.SinkFile, &capture.FileConfig{Path: "json.log", MaxSize: 64 << 20, MaxFiles: 2}
	rawSink, jsonSink := e.start(t, raw), e.start(t, js)
	stdout := sinkConfig("stdout")
	stdout.Kind, stdout.Stdout = capture.SinkStdout, &capture.StdoutConfig{}
	stdoutSink := e.start(t, stdout)
	var posted [][]byte
	var postedMu sync.Mutex
	hsrv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		postedMu.Lock()
		posted = append(posted, b)
		postedMu.Unlock()
	}))
	defer hsrv.Close()
	hc := sinkConfig("http")
	hc.Kind, hc.HTTP = capture.SinkHTTP, &capture.HTTPConfig{URL: hsrv.URL}
	httpSink := e.start(t, hc)
	for _, s := range []*running{loki, rawSink, jsonSink, stdoutSink, httpSink} {
		write(t, s, recs)
		s.stop(t)
	}
	postedMu.Lock()
	var ndjson bytes.Buffer
	for _, b := range posted {
		ndjson.Write(b)
	}
	postedMu.Unlock()
	for name, out := range map[string][]byte{"stdout": e.stdout.Bytes(), "http": ndjson.Bytes()} {
		got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		if len(got) != len(lines) {
			t.Fatalf("%s: %d lines, want %d", name, len(got), len(lines))
		}
		for i, l := range got {
			var obj struct{ Line string }
			if err := json.Unmarshal([]byte(l), &obj); err != nil {
				t.Fatalf("%s line %d is not valid JSON: %v", name, i, err)
			}
			var want string
			ref, _ := json.Marshal(lines[i])
			_ = json.Unmarshal(ref, &want)
			if obj.Line != want {
				t.Errorf("%s line %d = %q..., want %q...", name, i, trunc(obj.Line), trunc(want))
			}
		}
	}

	got := rcv.Entries()
	if len(got) != len(lines) {
		t.Fatalf("loki got %d entries, want %d", len(got), len(lines))
	}
	for i, e := range got {
		want := lines[i]
		if len(want) > 256<<10 {
			if len(e.Line) != 256<<10 || !strings.HasSuffix(e.Line, "[truncated by log-capturer]") {
				t.Errorf("the 1 MiB line reached Loki with %d bytes, want it truncated to 256 KiB with a marker", len(e.Line))
			}
			continue
		}
		if e.Line != want {
			t.Errorf("loki line %d = %q, want %q", i, e.Line, want)
		}
	}
	if v := sum(t, e.reg, "log_capturer_sink_truncated_lines_total"); v != 1 {
		t.Errorf("truncated lines metric = %v, want 1", v)
	}

	b, err := os.ReadFile(filepath.Join(e.root, "ns", "raw.log"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != strings.Join(lines, "\n")+"\n" {
		t.Error("raw file is not byte-exact")
	}
	f, err := os.Open(filepath.Join(e.root, "ns", "json.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 8<<20)
	n := 0
	for sc.Scan() {
		var obj map[string]any
		if err := json.Unmarshal(sc.Bytes(), &obj); err != nil {
			t.Fatalf("json line %d invalid: %v", n, err)
		}
		n++
	}
	if n != len(lines) {
		t.Fatalf("json file has %d lines, want %d", n, len(lines))
	}
}

func TestFileRotationRetentionAndRestart(t *testing.T) {
	e := newEnv(t)
	c := sinkConfig("file")
	c.BatchMaxBytes = 1 << 10
	c.Kind, c.File = capture.SinkFile, &capture.FileConfig{Path: "app/out.log", Raw: true, MaxSize: 4 << 10, MaxFiles: 3, Compress: true}
	s := e.start(t, c)
	recs := records(3000) // about 40 KiB: ~10 rotations
	write(t, s, recs)
	s.stop(t)

	dir := filepath.Join(e.root, "ns", "app")
	rotated, _ := filepath.Glob(filepath.Join(dir, "out.log.*"))
	if len(rotated) != 3 {
		t.Fatalf("%d rotated files kept, want maxFiles=3: %v", len(rotated), rotated)
	}
	for _, r := range rotated {
		if !strings.HasSuffix(r, ".gz") {
			t.Fatalf("rotated file %s is not gzipped", r)
		}
		zf, _ := os.Open(r)
		zr, err := gzip.NewReader(zf)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		if err != nil || len(b) == 0 || len(b) > 4<<10+1<<10 {
			t.Fatalf("rotated file %s: %d bytes, %v", r, len(b), err)
		}
		zf.Close()
	}
	cur, _ := os.ReadFile(filepath.Join(dir, "out.log"))
	lastLine := recs[len(recs)-1].Line + "\n"
	if !strings.HasSuffix(string(cur), lastLine) {
		t.Fatal("the current file does not end with the last line")
	}

	// A restart appends to the current file.
	s2 := e.start(t, c)
	write(t, s2, []*capture.Record{{Time: base, Line: "after restart"}})
	s2.stop(t)
	after, _ := os.ReadFile(filepath.Join(dir, "out.log"))
	if string(after) != string(cur)+"after restart\n" {
		t.Fatal("restart did not append to the current file")
	}
}

func TestFilePathsCannotLeaveTheRoot(t *testing.T) {
	e := newEnv(t)
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(e.root, "ns"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(e.root, "ns", "escape")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"../x.log", "a/../../x.log", "/etc/passwd", "escape/x.log"} {
		c := sinkConfig("file")
		c.Kind, c.File = capture.SinkFile, &capture.FileConfig{Path: p, MaxSize: 1 << 20, MaxFiles: 1}
		if _, err := e.factory.New("ns/p", c); err == nil || !strings.Contains(err.Error(), "leaves the file sink root") {
			t.Errorf("path %q: err = %v, want it refused", p, err)
		}
	}
}

func TestFileSharedByTwoPipelinesHasOneWriter(t *testing.T) {
	e := newEnv(t)
	c := sinkConfig("file")
	c.Kind, c.File = capture.SinkFile, &capture.FileConfig{Path: "shared.log", Raw: true, MaxSize: 1 << 30, MaxFiles: 1}
	a, b := e.start(t, c), e.start(t, c)
	var wg sync.WaitGroup
	for _, s := range []*running{a, b} {
		wg.Go(func() {
			for i := range 2000 {
				_ = s.Write(context.Background(), &capture.Record{Line: fmt.Sprintf("%p-%d-%s", s, i, strings.Repeat("z", 100))})
			}
		})
	}
	wg.Wait()
	a.stop(t)
	b.stop(t)
	data, _ := os.ReadFile(filepath.Join(e.root, "ns", "shared.log"))
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 4000 {
		t.Fatalf("%d lines, want 4000", len(lines))
	}
	for _, l := range lines {
		if len(l) < 100 || !strings.HasSuffix(l, strings.Repeat("z", 100)) {
			t.Fatalf("interleaved line %q", l)
		}
	}
}

func TestHTTPSinkNDJSONWithGzipHeadersAndTLS(t *testing.T) {
	pki := newPKI(t)
	var (
		mu     sync.Mutex
		bodies [][]byte
		hdrs   []http.Header
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := io.Reader(r.Body)
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		mu.Lock()
		bodies, hdrs = append(bodies, b), append(hdrs, r.Header.Clone())
		mu.Unlock()
	}))
	srv.TLS = pki.serverTLS(true)
	srv.StartTLS()
	defer srv.Close()

	e := newEnv(t)
	c := sinkConfig("http")
	c.Kind = capture.SinkHTTP
	c.HTTP = &capture.HTTPConfig{URL: srv.URL + "/ingest", Gzip: true, Headers: map[string]string{"X-Api-Key": "k3y"},
		Credentials: capture.Credentials{BearerToken: "t0ken"},
		TLS:         &capture.TLSConfig{CAPEM: pki.caPEM, CertPEM: pki.clientCertPEM, KeyPEM: pki.clientKeyPEM}}
	s := e.start(t, c)
	recs := records(500)
	write(t, s, recs)
	s.stop(t)

	mu.Lock()
	defer mu.Unlock()
	n := 0
	for i, b := range bodies {
		for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			var obj struct{ Line, Pod string }
			if err := json.Unmarshal([]byte(line), &obj); err != nil {
				t.Fatalf("invalid NDJSON line %q: %v", line, err)
			}
			n++
		}
		if hdrs[i].Get("Authorization") != "Bearer t0ken" || hdrs[i].Get("X-Api-Key") != "k3y" {
			t.Fatalf("headers %v", hdrs[i])
		}
	}
	if n != len(recs) {
		t.Fatalf("%d lines posted, want %d", n, len(recs))
	}
}

func TestTLSWithoutTheRightCAIsRetriedNotDelivered(t *testing.T) {
	pki := newPKI(t)
	rcv := lokireceiver.New()
	srv := httptest.NewUnstartedServer(rcv)
	srv.TLS = pki.serverTLS(false)
	srv.StartTLS()
	defer srv.Close()
	defer rcv.Close()
	e := newEnv(t)

	wrong := lokiConfig(srv.URL)
	s := e.start(t, wrong)
	write(t, s, records(10))
	eventually(t, "a failed TLS handshake", func() bool {
		st := s.Sink.(capture.StatsReporter).Stats()
		return st.FailedBatches > 0 && strings.Contains(st.LastError, "certificate")
	})
	if rcv.Len() != 0 {
		t.Fatal("delivered over TLS without trusting the server")
	}

	right := lokiConfig(srv.URL)
	right.Loki.TLS = &capture.TLSConfig{CAPEM: pki.caPEM}
	s2 := e.start(t, right)
	write(t, s2, records(10))
	eventually(t, "delivery with the right CA", func() bool { return rcv.Len() == 10 })
	s2.stop(t)
	s.cancel() // the sink that does not trust the server gives up
	s.stop(t)
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}

func TestUnknownOutcomeDuplicatesAreCounted(t *testing.T) {
	e := newEnv(t)
	rcv, srv := newReceiver(t)
	// The first push is stored but never answered: the sink times out and
	// sends it again, so Loki holds that batch twice.
	rcv.FailNext(1, lokireceiver.Fault{StoreThenHang: true})
	s := e.start(t, lokiConfig(srv.URL))
	recs := records(300)
	write(t, s, recs)
	eventually(t, "all lines", func() bool { return rcv.Len() > len(recs) })
	s.stop(t)

	counted := sum(t, e.reg, "log_capturer_sink_possible_duplicate_lines_total")
	if extra := rcv.Len() - len(recs); extra == 0 || float64(extra) != counted {
		t.Fatalf("%d duplicate entries arrived, %v counted", extra, counted)
	}
	seen := map[string]int{}
	for _, en := range rcv.Entries() {
		seen[en.Metadata["pod"]+" "+en.Line]++
	}
	for _, r := range recs {
		if seen[r.Pod+" "+r.Line] == 0 {
			t.Fatalf("line %q lost", r.Line)
		}
	}
}

func TestKnownFailuresAreNotCountedAsPossibleDuplicates(t *testing.T) {
	e := newEnv(t)
	rcv, srv := newReceiver(t)
	rcv.FailNext(2, lokireceiver.Fault{Status: 503})
	s := e.start(t, lokiConfig(srv.URL))
	write(t, s, records(100))
	s.stop(t)
	if n := sum(t, e.reg, "log_capturer_sink_possible_duplicate_lines_total"); n != 0 || rcv.Len() != 100 {
		t.Fatalf("possible duplicates %v, entries %d", n, rcv.Len())
	}
}

// flagAcker records that a record was acknowledged.
type flagAcker struct{ atomic.Bool }

func (f *flagAcker) Ack() { f.Store(true) }

// acks gives every record an Acker, as a pipeline's fan-out does, and
// returns a function that tells how many were acknowledged so far.
func acks(recs []*capture.Record) (acknowledged func() int) {
	flags := make([]*flagAcker, len(recs))
	for i, r := range recs {
		flags[i] = &flagAcker{}
		r.Acker = flags[i]
	}
	return func() int {
		n := 0
		for _, f := range flags {
			if f.Load() {
				n++
			}
		}
		return n
	}
}

// TestSinksAcknowledgeWhatTheyAreDoneWith checks what moves a pipeline's
// positions: delivered, rejected and policy-dropped lines are acknowledged;
// lines given up at shutdown are not, so that they are read again.
func TestSinksAcknowledgeWhatTheyAreDoneWith(t *testing.T) {
	t.Run("delivered", func(t *testing.T) {
		e := newEnv(t)
		rcv, srv := newReceiver(t)
		s := e.start(t, lokiConfig(srv.URL))
		recs := records(300)
		acked := acks(recs)
		rcv.FailNext(2, lokireceiver.Fault{Status: 503})
		write(t, s, recs)
		eventually(t, "every line acknowledged", func() bool { return acked() == 300 })
		if rcv.Len() != 300 {
			t.Fatalf("acknowledged 300 lines, Loki has %d", rcv.Len())
		}
	})
	t.Run("rejected", func(t *testing.T) {
		e := newEnv(t)
		rcv, srv := newReceiver(t)
		rcv.FailAll(lokireceiver.Fault{Status: 400, Body: "bad"})
		s := e.start(t, lokiConfig(srv.URL))
		recs := records(30)
		acked := acks(recs)
		write(t, s, recs)
		eventually(t, "rejected lines acknowledged", func() bool { return acked() == 30 })
	})
	for _, policy := range []string{sinks.DropNewest, sinks.DropOldest} {
		t.Run(policy+" drops, not at shutdown", func(t *testing.T) {
			_, s, _ := startFailingLoki(t, policy, 8<<10, 2<<10)
			recs := records(1000)
			acked := acks(recs)
			write(t, s, recs)
			st := s.Sink.(capture.StatsReporter).Stats()
			if st.DroppedLines == 0 || int64(acked()) != st.DroppedLines {
				t.Fatalf("%d dropped, %d acknowledged: exactly the dropped lines are done with", st.DroppedLines, acked())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			_ = s.Close(ctx) // the destination never answers: give up
			s.cancel()
			<-s.done
			if int64(acked()) != st.DroppedLines {
				t.Fatalf("%d acknowledged after a shutdown that delivered nothing, want the %d dropped by policy", acked(), st.DroppedLines)
			}
		})
	}
}
