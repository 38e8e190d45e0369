package runtime

import (
	"os"
	goruntime "runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the workers' Prometheus metrics. Per-pipeline series carry the
// label pipeline="<namespace>/<name>" and are deleted with the pipeline.
type Metrics struct {
	activeStreams   *prometheus.GaugeVec
	waitingStreams  *prometheus.GaugeVec
	rotations       *prometheus.CounterVec
	reconnects      *prometheus.CounterVec
	streamErrors    *prometheus.CounterVec
	logsProcessed   *prometheus.CounterVec
	bytesProcessed  *prometheus.CounterVec
	pipelineGorout  *prometheus.GaugeVec
	openStreams     *prometheus.GaugeVec
	selected        *prometheus.GaugeVec
	goroutines      prometheus.GaugeFunc
	openFDs         prometheus.GaugeFunc
	componentHealth *prometheus.GaugeVec

	resumeDuplicates *prometheus.CounterVec
	gaps             *prometheus.CounterVec
	gapSeconds       *prometheus.CounterVec
	positionWrites   *prometheus.CounterVec
	positionErrors   *prometheus.CounterVec
	positionBytes    *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	pl := []string{"pipeline"}
	m := &Metrics{
		activeStreams: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "log_capturer_active_streams",
			Help: "Log streams of the pipeline that are open now."}, pl),
		waitingStreams: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "log_capturer_waiting_streams",
			Help: "Selected containers of the pipeline waiting for a stream slot."}, pl),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "log_capturer_container_stream_rotations_total",
			Help: "Log streams closed and reopened because their rotation interval passed."}, pl),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "log_capturer_stream_reconnects_total",
			Help: "Log streams reopened after the server ended them or an error."}, pl),
		streamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "log_capturer_stream_errors_total",
			Help: "Errors opening or reading log streams."}, pl),
		logsProcessed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "log_capturer_logs_processed_total",
			Help: "Log lines read and handed to the pipeline's sinks."}, pl),
		bytesProcessed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "log_capturer_bytes_processed_total",
			Help: "Bytes of log lines read and handed to the pipeline's sinks."}, pl),
		pipelineGorout: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "log_capturer_pipeline_goroutines",
			Help: "Goroutines the pipeline's workers own, counted by the code that starts them."}, pl),
		openStreams: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "log_capturer_pipeline_open_streams",
			Help: "HTTP response bodies of log streams the pipeline holds open."}, pl),
		selected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "log_capturer_selected_containers",
			Help: "Containers the pipeline selects."}, pl),
		goroutines: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "log_capturer_goroutines",
			Help: "Goroutines of the operator process."}, func() float64 { return float64(goruntime.NumGoroutine()) }),
		openFDs: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "log_capturer_open_fds",
			Help: "Open file descriptors of the operator process, from /proc/self/fd."}, func() float64 { return float64(OpenFDs()) }),
		componentHealth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "log_capturer_component_health",
			Help: "1 when a component of the operator is healthy, 0 when not."}, []string{"component"}),
		resumeDuplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "log_capturer_resume_duplicates_total",
			Help: "Lines sent again after the workers resumed from stored positions that the previous workers had already handed to the sinks when the positions were last stored."}, pl),
		gaps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "log_capturer_log_gaps_total",
			Help: "Times a container's capture resumed and the kubelet no longer had the lines after the position (rotated away, or the container restarted more than once): those lines are lost."}, pl),
		gapSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "log_capturer_log_gap_seconds_total",
			Help: "Seconds of container log, from the last captured line to the first line found, that were gone when capture resumed."}, pl),
		positionWrites: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "log_capturer_positions_writes_total",
			Help: "Writes of the pipeline's positions to its ConfigMap."}, pl),
		positionErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "log_capturer_positions_write_errors_total",
			Help: "Failed writes of the pipeline's positions."}, pl),
		positionBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "log_capturer_positions_bytes",
			Help: "Compressed size of the pipeline's stored positions."}, pl),
	}
	for _, c := range []prometheus.Collector{m.activeStreams, m.waitingStreams, m.rotations, m.reconnects,
		m.streamErrors, m.logsProcessed, m.bytesProcessed, m.pipelineGorout, m.openStreams, m.selected,
		m.goroutines, m.openFDs, m.componentHealth, m.resumeDuplicates, m.gaps, m.gapSeconds,
		m.positionWrites, m.positionErrors, m.positionBytes} {
		if err := reg.Register(c); err != nil {
			return nil, err //nolint:wrapcheck // registration errors name the metric
		}
	}
	return m, nil
}

// forget deletes a pipeline's series.
func (m *Metrics) forget(pipeline string) {
	for _, v := range []interface{ DeleteLabelValues(...string) bool }{m.activeStreams, m.waitingStreams,
		m.rotations, m.reconnects, m.streamErrors, m.logsProcessed, m.bytesProcessed, m.pipelineGorout,
		m.openStreams, m.selected, m.resumeDuplicates, m.gaps, m.gapSeconds, m.positionWrites,
		m.positionErrors, m.positionBytes} {
		v.DeleteLabelValues(pipeline)
	}
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

// Touch creates the series of a pipeline at zero, so that they are listed
// before the pipeline reports anything (dashboards, tests).
func (m *Metrics) Touch(pipeline string) {
	for _, v := range []interface {
		WithLabelValues(...string) prometheus.Gauge
	}{m.activeStreams, m.waitingStreams,
		m.pipelineGorout, m.openStreams, m.selected, m.positionBytes} {
		v.WithLabelValues(pipeline)
	}
	for _, v := range []*prometheus.CounterVec{m.rotations, m.reconnects, m.streamErrors, m.logsProcessed, m.bytesProcessed,
		m.resumeDuplicates, m.gaps, m.gapSeconds, m.positionWrites, m.positionErrors} {
		v.WithLabelValues(pipeline)
	}
	m.componentHealth.WithLabelValues("workers")
}
