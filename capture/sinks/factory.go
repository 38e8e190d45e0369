// Package sinks delivers log records to Loki, files, HTTP endpoints,
// OpenTelemetry (OTLP) endpoints, Kafka, Elasticsearch, OpenSearch,
// S3-compatible object storage and standard output. Every (pipeline, SinkTarget) gets a bounded byte queue, a
// batcher and one sender goroutine with retries, so a slow or dead
// destination only ever affects its own queue.
package sinks

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/log-capturer/log-capturer/capture"
)

// Options are what the sinks need from the process.
type Options struct {
	// Stdout receives the records of Stdout sinks.
	Stdout io.Writer
	// FileRoot is the only directory File sinks may write under.
	FileRoot string
	// FileQuotaPerNamespace and FileQuotaTotal bound what File sinks may
	// keep on disk (maxSize × (maxFiles + 1) of each file), per namespace
	// and over all namespaces; zero is unlimited.
	FileQuotaPerNamespace, FileQuotaTotal int64
	// RequestTimeout bounds one HTTP or gRPC send, so that a hanging server
	// is retried; 30s when zero.
	RequestTimeout time.Duration
	// AllowLoopbackEgress lets sinks and probes connect to loopback
	// addresses; link-local, metadata, unspecified and multicast addresses
	// are refused always.
	AllowLoopbackEgress bool
	// Cluster holds the API server's and the nodes' addresses, which sinks
	// may reach only where a policy allows them; nil knows none.
	Cluster *ClusterAddresses
	// Budget bounds the bytes queued by all sinks, shared fairly between
	// namespaces; nil is unlimited.
	Budget *Budget
	// OnReject is told when a destination refuses a batch for good, with
	// the pipeline, the SinkTarget's name and the server's message.
	OnReject func(pipeline, sink, message string)
}

// Factory builds the sinks of pipelines. File sinks naming the same file
// share one writer. It is the Prometheus collector of every sink it built.
type Factory struct {
	*registry
	opts   Options
	stdout *lockedWriter
	files  *fileRegistry
}

// NewFactory returns a Factory.
func NewFactory(o Options) *Factory {
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	return &Factory{registry: newRegistry(), opts: o, stdout: &lockedWriter{w: o.Stdout}, files: newFileRegistry(o.FileRoot, o.FileQuotaPerNamespace, o.FileQuotaTotal)}
}

// New builds the sink of one pipeline for one SinkConfig; it is a
// runtime.SinkFactory.
func (f *Factory) New(pipeline string, c capture.SinkConfig) (capture.Sink, error) {
	eg, err := f.egress(c)
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", c.Name, err)
	}
	s := newQueuedSink(pipeline, c, f.opts.Budget)
	var d deliverer
	switch c.Kind {
	case capture.SinkLoki:
		d, err = newLokiDeliverer(c.Loki, f.opts.RequestTimeout, eg, func(n int) { s.c.truncated.Add(int64(n)) })
	case capture.SinkHTTP:
		d, err = newHTTPDeliverer(c.HTTP, f.opts.RequestTimeout, eg)
	case capture.SinkOTLP:
		if c.OTLP.GRPC {
			d, err = newOTLPGRPCDeliverer(c.OTLP, f.opts.RequestTimeout, eg)
		} else {
			d, err = newOTLPHTTPDeliverer(c.OTLP, f.opts.RequestTimeout, eg)
		}
	case capture.SinkKafka:
		d, err = newKafkaDeliverer(c.Kafka, f.opts.RequestTimeout, eg, func(n int) { s.c.truncated.Add(int64(n)) })
	case capture.SinkElasticsearch:
		d, err = newESDeliverer(c.Elasticsearch, f.opts.RequestTimeout, eg)
	case capture.SinkOpenSearch:
		d, err = newOSDeliverer(c.OpenSearch, f.opts.RequestTimeout, eg)
	case capture.SinkS3:
		d, err = newS3Deliverer(pipeline, c.S3, f.opts.RequestTimeout, eg)
	case capture.SinkFile:
		d, err = f.files.open(namespaceOf(pipeline), c.File)
	case capture.SinkStdout:
		d = &writerDeliverer{w: f.stdout, raw: c.Stdout != nil && c.Stdout.Raw}
	default:
		return nil, fmt.Errorf("unknown sink kind %q", c.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", c.Name, err)
	}
	s.d = d
	if f.opts.OnReject != nil {
		s.onReject = func(msg string) { f.opts.OnReject(pipeline, c.Name, msg) }
	}
	ns := namespaceOf(pipeline)
	f.opts.Budget.join(ns)
	s.release = func() {
		f.detach(pipeline, s)
		f.opts.Budget.leave(ns)
	}
	f.attach(pipeline, s)
	return s, nil
}

func (f *Factory) egress(c capture.SinkConfig) (egress, error) {
	return egressFor(f.opts.AllowLoopbackEgress, f.opts.Cluster, c.Egress)
}

// ForgetPipeline drops what the Factory keeps of a removed pipeline: its
// sinks' counters and series.
func (f *Factory) ForgetPipeline(pipeline string) { f.forget(pipeline) }

// lockedWriter serializes writes of whole batches from several sinks.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) write(b []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.w.Write(b)
	return err //nolint:wrapcheck // the caller names the sink
}

// writerDeliverer writes batches as lines to a shared writer (Stdout).
type writerDeliverer struct {
	w   *lockedWriter
	raw bool
	buf []byte
}

func (d *writerDeliverer) deliver(_ context.Context, batch []*capture.Record) error {
	d.buf = appendBatch(d.buf[:0], batch, d.raw)
	if err := d.w.write(d.buf); err != nil {
		return fmt.Errorf("writing to stdout: %w", err)
	}
	return nil
}

func (d *writerDeliverer) close(context.Context) error { return nil }

// Probe checks cheaply that a sink's destination can take records: Loki's
// /ready answers 2xx, a Kafka broker answers a metadata request,
// Elasticsearch answers GET / with 2xx, OpenSearch answers GET / as
// OpenSearch, an S3 bucket exists, a File
// sink's path resolves under the root. HTTP,
// OTLP (whose protocol has no readiness call) and Stdout sinks have no
// probe and always pass.
func (f *Factory) Probe(ctx context.Context, c capture.SinkConfig) error {
	switch c.Kind {
	case capture.SinkLoki:
		eg, err := f.egress(c)
		if err != nil {
			return err
		}
		client, tr, err := newHTTPClient(c.Loki.TLS, 5*time.Second, eg)
		if err != nil {
			return err
		}
		defer tr.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.Loki.URL, "/")+"/ready", nil)
		if err != nil {
			return fmt.Errorf("probing Loki: %w", err)
		}
		h := http.Header{}
		if c.Loki.TenantID != "" {
			h.Set("X-Scope-OrgID", c.Loki.TenantID)
		}
		authHeader(h, c.Loki.Credentials)
		req.Header = h
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("probing Loki: %w", err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("probing Loki: GET /ready answered %d", resp.StatusCode)
		}
	case capture.SinkKafka:
		eg, err := f.egress(c)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return probeKafka(ctx, c.Kafka, eg)
	case capture.SinkElasticsearch:
		eg, err := f.egress(c)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return probeES(ctx, c.Elasticsearch, eg)
	case capture.SinkOpenSearch:
		eg, err := f.egress(c)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return probeOS(ctx, c.OpenSearch, eg)
	case capture.SinkS3:
		eg, err := f.egress(c)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return probeS3(ctx, c.S3, eg)
	case capture.SinkFile:
		if _, err := f.files.resolve(c.Namespace, c.File.Path); err != nil {
			return err
		}
	}
	return nil
}
