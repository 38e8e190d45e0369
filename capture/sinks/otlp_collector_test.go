package sinks_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/log-capturer/log-capturer/capture"
)

// The real OpenTelemetry Collector of TestOTLPCollector: make otelcol-otlp
// builds it; LOG_CAPTURER_OTELCOL names another, and
// LOG_CAPTURER_REQUIRE_OTELCOL makes its absence a failure (make test-otlp,
// CI) rather than a skip.
const defaultOtelcol = "../../bin/otelcol-otlp-v0.165.0"

func otelcolBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("LOG_CAPTURER_OTELCOL")
	if bin == "" {
		bin = defaultOtelcol
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("LOG_CAPTURER_REQUIRE_OTELCOL") != "" {
			t.Fatalf("LOG_CAPTURER_REQUIRE_OTELCOL is set but the OpenTelemetry Collector %s is not there (make otelcol-otlp builds it): %v", bin, err)
		}
		t.Skipf("skipping the real OpenTelemetry Collector test: %s is absent (make test-otlp builds it and runs this test)", bin)
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// collector is a running OpenTelemetry Collector with the otlp receiver
// on loopback (HTTP and gRPC) and the file exporter.
type collector struct {
	bin, dir           string
	httpAddr, grpcAddr string
	cmd                *exec.Cmd
	stderr             *bytes.Buffer
	outputs            []string
	generation         int
	exited             chan struct{}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{bin: otelcolBinary(t), dir: t.TempDir(), httpAddr: freePort(t), grpcAddr: freePort(t)}
	c.start(t)
	t.Cleanup(func() { c.stop(t) })
	return c
}

// start runs the collector, writing to a new output file.
func (c *collector) start(t *testing.T) {
	t.Helper()
	c.generation++
	out := filepath.Join(c.dir, fmt.Sprintf("out-%d.json", c.generation))
	c.outputs = append(c.outputs, out)
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc: {endpoint: "%s"}
      http: {endpoint: "%s"}
exporters:
  file:
    path: %s
    flush_interval: 50ms
service:
  telemetry:
    metrics: {level: none}
    logs: {level: warn}
  pipelines:
    logs: {receivers: [otlp], exporters: [file]}
`, c.grpcAddr, c.httpAddr, out)
	cfgPath := filepath.Join(c.dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.stderr = &bytes.Buffer{}
	c.cmd = exec.Command(c.bin, "--config", cfgPath)
	c.cmd.Stdout, c.cmd.Stderr = c.stderr, c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(c.cmd, c.exited)
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range []string{c.httpAddr, c.grpcAddr} {
		for {
			conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
			if err == nil {
				conn.Close()
				break
			}
			select {
			case <-c.exited:
				t.Fatalf("the collector exited: %s", c.stderr)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("the collector does not listen on %s: %s", addr, c.stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// stop ends the collector as a rollout does (SIGTERM), letting it flush.
func (c *collector) stop(t *testing.T) {
	t.Helper()
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	c.cmd = nil
}

// received is every record the collector wrote, in order, with its
// resource's attributes.
type collected struct {
	resource map[string]string
	body     string
	time     time.Time
}

func (c *collector) received(t *testing.T) []collected {
	t.Helper()
	var out []collected
	for _, path := range c.outputs {
		f, err := os.Open(path)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			ld, err := (&plog.JSONUnmarshaler{}).UnmarshalLogs(sc.Bytes())
			if err != nil {
				// The last line may be half written while the exporter flushes.
				break
			}
			for i := range ld.ResourceLogs().Len() {
				rl := ld.ResourceLogs().At(i)
				res := map[string]string{}
				rl.Resource().Attributes().Range(func(k string, v pcommon.Value) bool {
					res[k] = v.AsString()
					return true
				})
				for j := range rl.ScopeLogs().Len() {
					lrs := rl.ScopeLogs().At(j).LogRecords()
					for k := range lrs.Len() {
						lr := lrs.At(k)
						out = append(out, collected{resource: res, body: lr.Body().AsString(), time: lr.Timestamp().AsTime()})
					}
				}
			}
		}
		f.Close()
	}
	return out
}

// TestOTLPCollector sends through a real OpenTelemetry Collector's otlp
// receiver, over HTTP/protobuf and gRPC, and reads what its file exporter
// wrote: every line once, in order per container, with the semantic
// conventions' resource attributes and the CRI timestamp; then again across
// a restart of the collector in the middle of the run.
func TestOTLPCollector(t *testing.T) {
	col := startCollector(t)
	e := newEnv(t)
	// Each protocol sends its own namespace's lines, so that the file tells
	// them apart.
	type run struct {
		s    *running
		recs []*capture.Record
	}
	var runs []run
	for _, p := range otlpProtocols {
		url := "http://" + col.httpAddr
		if p.grpc {
			url = "http://" + col.grpcAddr
		}
		c := otlpConfig(url, p.grpc)
		c.Name = "otlp-" + p.name
		c.MaxBackoff = 500 * time.Millisecond
		recs := records(4000)
		for _, r := range recs {
			r.Namespace = "shop-" + p.name
		}
		runs = append(runs, run{s: e.start(t, c), recs: recs})
	}
	total := 0
	for _, r := range runs {
		write(t, r.s, r.recs[:2000])
		total += 2000
	}
	waitCollected(t, col, total)

	// The collector goes away and comes back (a rollout) while lines keep
	// coming: they wait in the sinks' queues and arrive once it is back.
	col.stop(t)
	for _, r := range runs {
		write(t, r.s, r.recs[2000:])
		total += 2000
	}
	eventually(t, "failed sends while the collector is down", func() bool {
		for _, r := range runs {
			if r.s.Sink.(capture.StatsReporter).Stats().FailedBatches == 0 {
				return false
			}
		}
		return true
	})
	col.start(t)
	for _, r := range runs {
		r.s.stop(t)
	}
	got := waitCollected(t, col, total)

	byContainer := map[string][]collected{}
	for _, g := range got {
		k := g.resource["k8s.namespace.name"] + "/" + g.resource["k8s.pod.name"] + "/" + g.resource["k8s.container.name"]
		byContainer[k] = append(byContainer[k], g)
	}
	dups := sum(t, e.reg, "log_capturer_sink_possible_duplicate_lines_total")
	extra := len(got) - total
	if extra < 0 || float64(extra) > dups {
		t.Fatalf("the collector wrote %d records for %d lines, with %v possible duplicates counted", len(got), total, dups)
	}
	for _, r := range runs {
		want := map[string][]*capture.Record{}
		for _, rec := range r.recs {
			k := rec.Namespace + "/" + rec.Pod + "/" + rec.Container
			want[k] = append(want[k], rec)
		}
		for k, recs := range want {
			have := byContainer[k]
			if extra == 0 && len(have) != len(recs) {
				t.Fatalf("%s: %d records, want %d exactly once", k, len(have), len(recs))
			}
			i := 0
			for _, rec := range recs {
				// In order; a line sent twice (counted above) may repeat.
				for i < len(have) && have[i].body != rec.Line {
					if extra == 0 {
						t.Fatalf("%s: got %q where %q was due", k, have[i].body, rec.Line)
					}
					i++
				}
				if i == len(have) {
					t.Fatalf("%s: line %q lost or out of order", k, rec.Line)
				}
				h := have[i]
				if !h.time.Equal(rec.Time) {
					t.Fatalf("%s: %q has time %v, want the CRI timestamp %v", k, rec.Line, h.time, rec.Time)
				}
				i++
			}
			res := have[0].resource
			for attr, v := range map[string]string{"k8s.namespace.name": recs[0].Namespace, "k8s.pod.name": recs[0].Pod,
				"k8s.container.name": "main", "k8s.node.name": "node-1", "k8s.pod.label.app": "web", "k8s.cluster.name": "test"} {
				if res[attr] != v {
					t.Fatalf("%s: resource attribute %s = %q, want %q (all: %v)", k, attr, res[attr], v, res)
				}
			}
		}
		st := r.s.Sink.(capture.StatsReporter).Stats()
		t.Logf("otlp_collector %s: sent %d lines, %d failed sends, %d retries, %d dropped", st.Name, st.SentLines, st.FailedBatches, st.Retries, st.DroppedLines)
		if st.SentLines != 4000 || st.DroppedLines != 0 {
			t.Fatalf("%s: stats %+v", st.Name, st)
		}
	}
	t.Logf("otlp_collector: %d lines, %d records written by the collector, %v possible duplicates counted", total, len(got), dups)
}

// waitCollected waits until the collector wrote at least n records, then
// a little longer, so that extra records would be seen too.
func waitCollected(t *testing.T, col *collector, n int) []collected {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(col.received(t)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the collector wrote %d of %d records: %s", len(col.received(t)), n, strings.TrimSpace(col.stderr.String()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	return col.received(t)
}
