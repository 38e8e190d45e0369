package sinks

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	lcruntime "github.com/log-capturer/log-capturer/runtime"
)

// deliverer sends one batch to a destination. It returns nil on success, a
// *sendError for a failure the destination reported, or any other error
// (network) that is retried.
type deliverer interface {
	deliver(ctx context.Context, batch []*lcruntime.Record) error
	close(ctx context.Context) error
}

// sendError is a failure the destination answered with.
type sendError struct {
	status     int
	retryable  bool
	retryAfter time.Duration
	message    string
}

func (e *sendError) Error() string {
	return fmt.Sprintf("destination answered %d: %s", e.status, e.message)
}

// queuedSink is the Sink of one (pipeline, SinkTarget): a bounded byte
// queue, a batcher and a sender with retries, in one goroutine (Run).
type queuedSink struct {
	pipeline string
	cfg      lcruntime.SinkConfig
	q        *queue
	d        deliverer
	m        *sinkMetrics
	onReject func(message string)

	// state is sinkNew until Run or Close claims the sender's work.
	state atomic.Int32
	done  chan struct{}

	mu    sync.Mutex
	stats lcruntime.SinkStats
}

func newQueuedSink(pipeline string, cfg lcruntime.SinkConfig, d deliverer, m *Metrics, onReject func(string)) *queuedSink {
	s := &queuedSink{pipeline: pipeline, cfg: cfg, d: d, m: m.forSink(pipeline, cfg.Name),
		onReject: onReject, done: make(chan struct{})}
	s.stats.Name = cfg.Name
	s.stats.QueueMaxBytes = cfg.BufferMaxBytes
	s.q = newQueue(cfg.BufferMaxBytes, cfg.WhenFull, func(n int) { s.drop(n, "buffer_full") })
	return s
}

// Write queues r, applying the sink's whenFull policy.
func (s *queuedSink) Write(ctx context.Context, r *lcruntime.Record) error {
	err := s.q.push(ctx, r)
	s.m.queueBytes.Set(float64(s.q.size()))
	return err
}

const (
	sinkNew int32 = iota
	sinkRunning
	sinkClosedBeforeRun
)

// Run batches and sends until Close drained the queue or ctx ends.
func (s *queuedSink) Run(ctx context.Context) {
	if !s.state.CompareAndSwap(sinkNew, sinkRunning) {
		return
	}
	defer close(s.done)
	s.drain(ctx)
}

// drain sends batches until the queue is closed and empty, or ctx ends.
func (s *queuedSink) drain(ctx context.Context) {
	batch := make([]*lcruntime.Record, 0, 1024)
	for {
		batch = s.q.popBatch(ctx, batch[:0], s.cfg.BatchMaxBytes, s.cfg.BatchMaxWait)
		s.m.queueBytes.Set(float64(s.q.size()))
		if batch == nil {
			return
		}
		s.send(ctx, batch)
		clear(batch)
	}
}

// send delivers one batch, retrying what can succeed later with exponential
// backoff and jitter (or the server's Retry-After) until ctx ends.
func (s *queuedSink) send(ctx context.Context, batch []*lcruntime.Record) {
	backoff := s.cfg.MinBackoff
	uncertain := 0
	for {
		start := time.Now()
		err := s.d.deliver(ctx, batch)
		s.m.duration.Observe(time.Since(start).Seconds())
		if err == nil {
			s.succeeded(batch)
			lcruntime.AckAll(batch)
			if uncertain > 0 {
				// Attempts whose outcome was unknown may have been stored too.
				s.m.possibleDuplicates.Add(float64(uncertain * len(batch)))
			}
			return
		}
		s.failed(err)
		if outcomeUnknown(err) {
			uncertain++
		}
		var se *sendError
		if errors.As(err, &se) && !se.retryable {
			// The batch can never succeed: it is counted and done with.
			s.drop(len(batch), "rejected")
			lcruntime.AckAll(batch)
			if s.onReject != nil {
				s.onReject(fmt.Sprintf("%s rejected a batch of %d lines for pipeline %s: %s",
					s.cfg.Name, len(batch), s.pipeline, se.Error()))
			}
			return
		}
		wait := jitter(backoff)
		if se != nil && se.retryAfter > 0 {
			wait = min(se.retryAfter, s.cfg.MaxBackoff)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			// Not acknowledged: the workers read these lines again.
			s.drop(len(batch), "shutdown")
			return
		}
		s.m.retries.Inc()
		s.mu.Lock()
		s.stats.Retries++
		s.mu.Unlock()
		backoff = min(2*backoff, s.cfg.MaxBackoff)
	}
}

// outcomeUnknown tells whether a failed send may nevertheless have been
// stored: the request went out but no answer came back (a timeout or a
// connection lost after sending). A refused connection or an HTTP status is
// a known outcome.
func outcomeUnknown(err error) bool {
	var se *sendError
	if errors.As(err, &se) {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	return true
}

// jitter spreads d by ±20%.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d - d/5 + time.Duration(rand.Int64N(int64(d)*2/5+1))
}

func (s *queuedSink) succeeded(batch []*lcruntime.Record) {
	var bytes int64
	for _, r := range batch {
		bytes += int64(len(r.Line))
	}
	now := time.Now()
	s.m.sentLines.Add(float64(len(batch)))
	s.m.sentBytes.Add(float64(bytes))
	s.m.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
	s.mu.Lock()
	s.stats.SentLines += int64(len(batch))
	s.stats.SentBytes += bytes
	s.stats.LastSuccess = now
	s.stats.FailingSince = time.Time{}
	s.mu.Unlock()
}

func (s *queuedSink) failed(err error) {
	s.m.failedBatches.Inc()
	s.mu.Lock()
	s.stats.FailedBatches++
	if s.stats.FailingSince.IsZero() {
		s.stats.FailingSince = time.Now()
	}
	s.stats.LastError = err.Error()
	s.mu.Unlock()
}

func (s *queuedSink) drop(n int, reason string) {
	if n == 0 {
		return
	}
	s.m.dropped(reason).Add(float64(n))
	s.mu.Lock()
	s.stats.DroppedLines += int64(n)
	s.mu.Unlock()
}

// Stats reports the sink's numbers.
func (s *queuedSink) Stats() lcruntime.SinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.QueueBytes = s.q.size()
	return st
}

// Close lets Run send what is queued until ctx ends, then releases the
// destination.
func (s *queuedSink) Close(ctx context.Context) error {
	s.q.close()
	var err error
	if s.state.CompareAndSwap(sinkNew, sinkClosedBeforeRun) {
		s.drain(ctx) // Run never started: send what is queued here
	} else {
		select {
		case <-s.done:
		case <-ctx.Done():
			err = fmt.Errorf("sink %s did not drain in time: %w", s.cfg.Name, ctx.Err())
		}
	}
	if cerr := s.d.close(ctx); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// Metrics are the sinks' Prometheus metrics, per pipeline and sink.
type Metrics struct {
	sentLines, sentBytes, failedBatches, retries, truncated *prometheus.CounterVec
	possibleDuplicates                                      *prometheus.CounterVec
	droppedLines                                            *prometheus.CounterVec
	queueBytes, lastSuccess                                 *prometheus.GaugeVec
	duration                                                *prometheus.HistogramVec
}

// NewMetrics creates the sink metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	l := []string{"pipeline", "sink"}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, l)
	}
	m := &Metrics{
		sentLines:     counter("log_capturer_sink_sent_lines_total", "Lines the sink delivered."),
		sentBytes:     counter("log_capturer_sink_sent_bytes_total", "Bytes of lines the sink delivered."),
		failedBatches: counter("log_capturer_sink_failed_batches_total", "Send attempts that failed."),
		retries:       counter("log_capturer_sink_retries_total", "Send attempts that repeated a failed one."),
		truncated:     counter("log_capturer_sink_truncated_lines_total", "Lines truncated to the destination's size limit."),
		possibleDuplicates: counter("log_capturer_sink_possible_duplicate_lines_total",
			"Lines sent again after an attempt whose outcome was unknown (timeout, connection lost); the destination may hold them twice."),
		droppedLines: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "log_capturer_sink_dropped_lines_total",
			Help: "Lines dropped, by reason: buffer_full (a Drop policy), rejected (the destination refused them), shutdown."},
			[]string{"pipeline", "sink", "reason"}),
		queueBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "log_capturer_sink_queue_bytes",
			Help: "Bytes queued for the sink."}, l),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "log_capturer_sink_last_success_timestamp_seconds",
			Help: "Unix time of the sink's last successful send."}, l),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "log_capturer_sink_send_duration_seconds",
			Help: "Duration of send attempts.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}, l),
	}
	for _, c := range []prometheus.Collector{m.sentLines, m.sentBytes, m.failedBatches, m.retries, m.truncated,
		m.possibleDuplicates, m.droppedLines, m.queueBytes, m.lastSuccess, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err //nolint:wrapcheck // registration errors name the metric
		}
	}
	return m, nil
}

type sinkMetrics struct {
	m                                                      *Metrics
	pipeline, sink                                         string
	sentLines, sentBytes, failedBatches, retries, truncate prometheus.Counter
	possibleDuplicates                                     prometheus.Counter
	queueBytes, lastSuccess                                prometheus.Gauge
	duration                                               prometheus.Observer
}

func (m *Metrics) forSink(pipeline, sink string) *sinkMetrics {
	return &sinkMetrics{m: m, pipeline: pipeline, sink: sink,
		sentLines:          m.sentLines.WithLabelValues(pipeline, sink),
		sentBytes:          m.sentBytes.WithLabelValues(pipeline, sink),
		failedBatches:      m.failedBatches.WithLabelValues(pipeline, sink),
		retries:            m.retries.WithLabelValues(pipeline, sink),
		truncate:           m.truncated.WithLabelValues(pipeline, sink),
		possibleDuplicates: m.possibleDuplicates.WithLabelValues(pipeline, sink),
		queueBytes:         m.queueBytes.WithLabelValues(pipeline, sink),
		lastSuccess:        m.lastSuccess.WithLabelValues(pipeline, sink),
		duration:           m.duration.WithLabelValues(pipeline, sink),
	}
}

func (s *sinkMetrics) dropped(reason string) prometheus.Counter {
	return s.m.droppedLines.WithLabelValues(s.pipeline, s.sink, reason)
}

// ForgetPipeline deletes every series of a removed pipeline.
func (m *Metrics) ForgetPipeline(pipeline string) {
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{m.sentLines, m.sentBytes, m.failedBatches, m.retries, m.truncated, m.possibleDuplicates, m.droppedLines,
		m.queueBytes, m.lastSuccess, m.duration} {
		v.DeletePartialMatch(prometheus.Labels{"pipeline": pipeline})
	}
}

// Touch creates the series of a (pipeline, sink) at zero.
func (m *Metrics) Touch(pipeline, sink string) {
	m.forSink(pipeline, sink).dropped("buffer_full")
}
