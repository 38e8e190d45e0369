package sinks

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/log-capturer/log-capturer/capture"
)

// dropReason is why lines were dropped; the reasons are the values of the
// reason label of log_capturer_sink_dropped_lines_total.
type dropReason int

const (
	dropBufferFull  dropReason = iota // a Drop policy with a full queue
	dropRejected                      // the destination refused the batch for good
	dropShutdown                      // given up at shutdown, not acknowledged: read again
	dropMemoryShare                   // a Drop policy with the namespace's memory share full
	dropReasons
)

var dropReasonNames = [dropReasons]string{"buffer_full", "rejected", "shutdown", "memory_share"}

// counters are one (pipeline, sink)'s counts, the one source of both its
// SinkStats and its Prometheus series. They outlive the sink across a
// pipeline's configuration changes, so counters only grow until the
// pipeline is removed.
type counters struct {
	sentLines, sentBytes, failedBatches, retries atomic.Int64
	truncated, possibleDuplicates                atomic.Int64
	dropped                                      [dropReasons]atomic.Int64
	lastSuccessNanos, lastRejectedNanos          atomic.Int64
	// memoryShareLimited counts records that found the namespace's memory
	// share full (then dropped or waited for, by whenFull).
	memoryShareLimited, lastShareLimitedNanos atomic.Int64
}

func (c *counters) stats(name string) capture.SinkStats {
	st := capture.SinkStats{Name: name, SentLines: c.sentLines.Load(), SentBytes: c.sentBytes.Load(),
		FailedBatches: c.failedBatches.Load(), Retries: c.retries.Load()}
	for i := range c.dropped {
		st.DroppedLines += c.dropped[i].Load()
	}
	if t := c.lastSuccessNanos.Load(); t != 0 {
		st.LastSuccess = time.Unix(0, t)
	}
	st.RejectedLines = c.dropped[dropRejected].Load()
	if t := c.lastRejectedNanos.Load(); t != 0 {
		st.LastRejected = time.Unix(0, t)
	}
	st.MemoryShareLimited = c.memoryShareLimited.Load()
	if t := c.lastShareLimitedNanos.Load(); t != 0 {
		st.LastMemoryShareLimited = time.Unix(0, t)
	}
	return st
}

type sinkKey struct{ pipeline, sink string }

// sinkEntry is what the Factory keeps of one (pipeline, sink): its counters
// and, while it runs, the sink itself (for the queue gauge).
type sinkEntry struct {
	c    *counters
	live *queuedSink
}

// registry holds every (pipeline, sink)'s entry and exports them as metrics.
type registry struct {
	mu       sync.Mutex
	entries  map[sinkKey]*sinkEntry
	duration *prometheus.HistogramVec
}

func newRegistry() *registry {
	return &registry{entries: map[sinkKey]*sinkEntry{},
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "log_capturer_sink_send_duration_seconds",
			Help: "Duration of send attempts.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}, []string{"pipeline", "sink"})}
}

// attach returns the counters of (pipeline, sink), making s the live sink.
func (r *registry) attach(pipeline string, s *queuedSink) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := sinkKey{pipeline, s.cfg.Name}
	e := r.entries[k]
	if e == nil {
		e = &sinkEntry{c: &counters{}}
		r.entries[k] = e
	}
	e.live = s
	s.c = e.c
	s.duration = r.duration.WithLabelValues(pipeline, s.cfg.Name)
}

// detach forgets s as the live sink of its entry, unless another took over.
func (r *registry) detach(pipeline string, s *queuedSink) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.entries[sinkKey{pipeline, s.cfg.Name}]; e != nil && e.live == s {
		e.live = nil
	}
}

// forget drops every entry of a removed pipeline and its series.
func (r *registry) forget(pipeline string) {
	r.mu.Lock()
	for k := range r.entries {
		if k.pipeline == pipeline {
			delete(r.entries, k)
		}
	}
	r.mu.Unlock()
	r.duration.DeletePartialMatch(prometheus.Labels{"pipeline": pipeline})
}

// sinkSeries is one per-sink metric and how to read it; this table is the
// only list of the sinks' metrics.
type sinkSeries struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(e *sinkEntry) float64
}

var sinkLabels = []string{"pipeline", "sink"}

func sinkCounter(name, help string, v func(c *counters) *atomic.Int64) sinkSeries {
	return sinkSeries{prometheus.NewDesc(name, help, sinkLabels, nil), prometheus.CounterValue,
		func(e *sinkEntry) float64 { return float64(v(e.c).Load()) }}
}

var sinkMetrics = []sinkSeries{
	sinkCounter("log_capturer_sink_sent_lines_total", "Lines the sink delivered.",
		func(c *counters) *atomic.Int64 { return &c.sentLines }),
	sinkCounter("log_capturer_sink_sent_bytes_total", "Bytes of lines the sink delivered.",
		func(c *counters) *atomic.Int64 { return &c.sentBytes }),
	sinkCounter("log_capturer_sink_failed_batches_total", "Send attempts that failed.",
		func(c *counters) *atomic.Int64 { return &c.failedBatches }),
	sinkCounter("log_capturer_sink_retries_total", "Send attempts that repeated a failed one.",
		func(c *counters) *atomic.Int64 { return &c.retries }),
	sinkCounter("log_capturer_sink_memory_share_limited_total",
		"Lines that found their namespace's share of the operator's memory budget full; Block sinks waited for room, Drop sinks dropped them (counted in dropped_lines_total{reason=\"memory_share\"}).",
		func(c *counters) *atomic.Int64 { return &c.memoryShareLimited }),
	sinkCounter("log_capturer_sink_truncated_lines_total", "Lines truncated to the destination's size limit.",
		func(c *counters) *atomic.Int64 { return &c.truncated }),
	sinkCounter("log_capturer_sink_possible_duplicate_lines_total",
		"Lines sent again after an attempt whose outcome was unknown (timeout, connection lost); the destination may hold them twice.",
		func(c *counters) *atomic.Int64 { return &c.possibleDuplicates }),
	{prometheus.NewDesc("log_capturer_sink_queue_bytes", "Bytes queued for the sink.", sinkLabels, nil), prometheus.GaugeValue,
		func(e *sinkEntry) float64 {
			if e.live == nil {
				return 0
			}
			return float64(e.live.q.size())
		}},
	{prometheus.NewDesc("log_capturer_sink_last_success_timestamp_seconds", "Unix time of the sink's last successful send.",
		sinkLabels, nil), prometheus.GaugeValue,
		func(e *sinkEntry) float64 { return float64(e.c.lastSuccessNanos.Load()) / 1e9 }},
}

var droppedDesc = prometheus.NewDesc("log_capturer_sink_dropped_lines_total",
	"Lines dropped, by reason: buffer_full (a Drop policy with the sink's buffer full), memory_share (a Drop policy with the namespace's memory share full), rejected (the destination refused them for good, a whole batch or part of one), shutdown (not acknowledged; read again).",
	[]string{"pipeline", "sink", "reason"}, nil)

// Describe sends the descriptions of every sink metric.
func (r *registry) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range sinkMetrics {
		ch <- s.desc
	}
	ch <- droppedDesc
	r.duration.Describe(ch)
}

// Collect reads every (pipeline, sink)'s metrics from its counters.
func (r *registry) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	keys := make([]sinkKey, 0, len(r.entries))
	entries := make([]*sinkEntry, 0, len(r.entries))
	for k, e := range r.entries {
		keys = append(keys, k)
		entries = append(entries, e)
	}
	r.mu.Unlock()
	for i, e := range entries {
		k := keys[i]
		for _, s := range sinkMetrics {
			ch <- prometheus.MustNewConstMetric(s.desc, s.kind, s.value(e), k.pipeline, k.sink)
		}
		for reason, name := range dropReasonNames {
			ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue,
				float64(e.c.dropped[reason].Load()), k.pipeline, k.sink, name)
		}
	}
	r.duration.Collect(ch)
}
