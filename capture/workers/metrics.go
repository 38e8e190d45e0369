package workers

import (
	"os"
	goruntime "runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// series is one per-pipeline metric: its description and how to read it from
// the pipeline's own counters. This table is the only list of the workers'
// metrics; the Manager's collector reads every value from the same counters
// that Snapshot reads, so the two can never disagree.
type series struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(p *pipeline) float64
}

func gauge(name, help string, v func(p *pipeline) float64) series {
	return series{prometheus.NewDesc(name, help, []string{"pipeline"}, nil), prometheus.GaugeValue, v}
}

func counter(name, help string, v func(p *pipeline) float64) series {
	return series{prometheus.NewDesc(name, help, []string{"pipeline"}, nil), prometheus.CounterValue, v}
}

var pipelineSeries = []series{
	gauge("log_capturer_active_streams", "Log streams of the pipeline that are open now.",
		func(p *pipeline) float64 { return float64(p.stats.active.Load()) }),
	gauge("log_capturer_waiting_streams", "Selected containers of the pipeline waiting for a stream slot.",
		func(p *pipeline) float64 { return float64(p.stats.waiting.Load()) }),
	gauge("log_capturer_selected_containers", "Containers the pipeline selects.",
		func(p *pipeline) float64 { return float64(p.stats.selected.Load()) }),
	gauge("log_capturer_pipeline_goroutines", "Goroutines the pipeline's workers own, counted by the code that starts them.",
		func(p *pipeline) float64 { return float64(p.goroutines()) }),
	gauge("log_capturer_pipeline_open_streams", "HTTP response bodies of log streams the pipeline holds open.",
		func(p *pipeline) float64 { return float64(p.stats.openStreams.Load()) }),
	counter("log_capturer_container_stream_rotations_total", "Log streams closed and reopened because their rotation interval passed.",
		func(p *pipeline) float64 { return float64(p.stats.rotations.Load()) }),
	counter("log_capturer_stream_reconnects_total", "Log streams reopened after the server ended them or an error.",
		func(p *pipeline) float64 { return float64(p.stats.reconnects.Load()) }),
	counter("log_capturer_stream_errors_total", "Errors opening or reading log streams.",
		func(p *pipeline) float64 { return float64(p.stats.errors.Load()) }),
	counter("log_capturer_logs_processed_total", "Log lines read and handed to the pipeline's sinks.",
		func(p *pipeline) float64 { return float64(p.stats.lines.Load()) }),
	counter("log_capturer_bytes_processed_total", "Bytes of log lines read and handed to the pipeline's sinks.",
		func(p *pipeline) float64 { return float64(p.stats.bytes.Load()) }),
	counter("log_capturer_resume_duplicates_total",
		"Lines sent again after the workers resumed from stored positions that the previous workers had already handed to the sinks when the positions were last stored.",
		func(p *pipeline) float64 { return float64(p.stats.resumeDuplicates.Load()) }),
	counter("log_capturer_log_gaps_total",
		"Times a container's capture resumed and the kubelet no longer had the lines after the position (rotated away, or the container restarted more than once): those lines are lost.",
		func(p *pipeline) float64 { return float64(p.stats.gaps.Load()) }),
	counter("log_capturer_log_gap_seconds_total",
		"Seconds of container log, from the last captured line to the first line found, that were gone when capture resumed.",
		func(p *pipeline) float64 { return float64(p.stats.gapNanos.Load()) / 1e9 }),
	counter("log_capturer_log_gap_bytes_total",
		"Bytes of container log the kubelet deleted or truncated before the workers read them (read from its files; as far as they are known).",
		func(p *pipeline) float64 { return float64(p.stats.gapBytes.Load()) }),
	counter("log_capturer_malformed_lines_total",
		"Lines of the kubelet's log files that were not in the CRI format, skipped.",
		func(p *pipeline) float64 { return float64(p.stats.malformedLines.Load()) }),
	gauge("log_capturer_file_containers",
		"Selected containers read from the kubelet's files on this node rather than through the API.",
		func(p *pipeline) float64 { return float64(p.stats.fileContainers.Load()) }),
	gauge("log_capturer_unread_bytes",
		"Lag of the containers read from the kubelet's files: bytes of their logs after the positions the sinks acknowledged.",
		func(p *pipeline) float64 { return float64(p.stats.unreadBytes.Load()) }),
	counter("log_capturer_positions_writes_total", "Writes of the pipeline's positions to its store.",
		func(p *pipeline) float64 { return float64(p.stats.positionWrites.Load()) }),
	counter("log_capturer_positions_stages_total",
		"Writes of the pipeline's positions that outlive a kill of the process, not of the machine (the node journal's), made before a sink sends lines.",
		func(p *pipeline) float64 { return float64(p.stats.positionStages.Load()) }),
	counter("log_capturer_positions_write_errors_total", "Failed writes (and stages) of the pipeline's positions.",
		func(p *pipeline) float64 { return float64(p.stats.positionErrors.Load()) }),
	gauge("log_capturer_positions_bytes", "Compressed size of the pipeline's stored positions.",
		func(p *pipeline) float64 { return float64(p.stats.positionBytes.Load()) }),
	{prometheus.NewDesc("log_capturer_truncated_lines_total",
		"Lines cut to the pipeline's lines.maxSize and marked, by reason; the rest of each was skipped unread into memory.",
		[]string{"pipeline"}, prometheus.Labels{"reason": "max_line_size"}), prometheus.CounterValue,
		func(p *pipeline) float64 { return float64(p.stats.truncatedLines.Load()) }},
}

var (
	processGoroutinesDesc = prometheus.NewDesc("log_capturer_goroutines", "Goroutines of the operator process.", nil, nil)
	processFDsDesc        = prometheus.NewDesc("log_capturer_open_fds",
		"Open file descriptors of the operator process, from /proc/self/fd.", nil, nil)
	componentHealthDesc = prometheus.NewDesc("log_capturer_component_health",
		"1 when a component of the operator is healthy, 0 when not.", []string{"component"}, nil)
)

// Describe sends the descriptions of every metric of the workers.
func (m *Manager) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range pipelineSeries {
		ch <- s.desc
	}
	ch <- processGoroutinesDesc
	ch <- processFDsDesc
	ch <- componentHealthDesc
}

// Collect reads the workers' metrics from their counters: the Manager is
// the Prometheus collector of every pipeline it runs, and a removed
// pipeline's series are gone with it.
func (m *Manager) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	ps := make([]*pipeline, 0, len(m.pipelines))
	for _, e := range m.pipelines {
		ps = append(ps, e.p)
	}
	running := m.root != nil && m.root.ctx.Err() == nil
	m.mu.Unlock()
	for _, p := range ps {
		for _, s := range pipelineSeries {
			ch <- prometheus.MustNewConstMetric(s.desc, s.kind, s.value(p), p.key)
		}
	}
	ch <- prometheus.MustNewConstMetric(processGoroutinesDesc, prometheus.GaugeValue, float64(goruntime.NumGoroutine()))
	ch <- prometheus.MustNewConstMetric(processFDsDesc, prometheus.GaugeValue, float64(OpenFDs()))
	health := 0.0
	if running {
		health = 1
	}
	ch <- prometheus.MustNewConstMetric(componentHealthDesc, prometheus.GaugeValue, health, "workers")
}

// OpenFDs counts the process's open file descriptors, or -1 when
// /proc/self/fd cannot be read.
func OpenFDs() int {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return -1
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return -1
	}
	return len(names) - 1 // the directory itself
}
