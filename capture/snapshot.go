package capture

import "time"

// Snapshot is what the workers of one pipeline report about themselves.
// Every number is counted by the code that owns the thing counted.
type Snapshot struct {
	// Running is true while the pipeline's workers run.
	Running bool
	// HandingOver is true while a new configuration waits for the previous
	// workers to drain their sinks and stop (at most the drain timeout).
	HandingOver bool
	// SelectedContainers, ActiveStreams and WaitingStreams describe the pool:
	// waiting containers are due for a stream but every slot is taken.
	SelectedContainers int
	ActiveStreams      int
	WaitingStreams     int
	// NamespaceLimited is how many of the waiting containers wait for the
	// operator's limit of streams per namespace rather than for the
	// pipeline's own pool; NamespaceStreams are the streams the namespace's
	// pipelines hold now, of NamespaceStreamLimit (zero when unlimited).
	NamespaceLimited     int
	NamespaceStreams     int
	NamespaceStreamLimit int
	// OpenStreams is how many response bodies are open now.
	OpenStreams int
	// Rotations counts streams closed and reopened on the rotation interval.
	Rotations int64
	// Reconnects counts streams reopened after EOF or an error.
	Reconnects int64
	// StreamErrors counts errors opening or reading streams.
	StreamErrors int64
	// Goroutines counts the goroutines the pipeline's workers own.
	Goroutines int
	// ProcessGoroutines and OpenFDs are the whole process's.
	ProcessGoroutines int
	OpenFDs           int
	// TruncatedLines counts lines cut to the pipeline's maximum line size.
	TruncatedLines int64
	// MalformedLines counts lines of the kubelet's files that were not in
	// the CRI format, skipped.
	MalformedLines int64
	// FileContainers counts the selected containers read from the
	// kubelet's files rather than through the API.
	FileContainers int
	// UnreadBytes is the lag of the containers read from files: the bytes
	// the kubelet holds of their logs after the positions the sinks
	// acknowledged (read and queued, or not yet read). Measured on the
	// sample period; a container with no line acknowledged yet counts from
	// its first line in flight, one with nothing read yet not at all.
	UnreadBytes int64
	// Opens counts streams that waited for their turn to open and OpenWait
	// how long they waited in all; OpenRateLimit is the process-wide rate
	// they share (opens per second, 0 for unlimited).
	Opens         int64
	OpenWait      time.Duration
	OpenRateLimit float64
	// LinesTotal and BytesTotal count what the workers read.
	LinesTotal int64
	BytesTotal int64
	// Sinks are the pipeline's sinks' numbers, in spec order.
	Sinks []SinkStats
	// LongestWait is how long the longest-waiting container has been due
	// for a stream without a free slot.
	LongestWait time.Duration
	// Window is what the sampler measured over the pipeline's health window.
	Window Window
	// Positions tells how the pipeline's positions are stored.
	Positions PositionsStatus
	// ResumeDuplicates counts lines sent again after a resume that the
	// previous workers had handed to the sinks before their positions were
	// last stored.
	ResumeDuplicates int64
	// Gaps counts stretches of log the kubelet no longer had when a
	// container's capture resumed; LastGap is the latest.
	Gaps    int64
	LastGap *Gap
	// GapBytes is how many bytes those gaps lost, where it is known.
	GapBytes int64
	// Agents is set when node agents run the workers: the numbers above
	// are then their reports summed over the nodes (the process-wide ones,
	// ProcessGoroutines and OpenFDs, are the largest agent's).
	Agents *Agents
}

// Window is what the sampler measured over a pipeline's health window.
// Growth numbers are least-squares slopes; "unexplained" goroutines are
// those not accounted for by open streams, so that more pods is not a leak.
type Window struct {
	// Samples is how many samples the window holds; Covered how much time they span.
	Samples int
	Covered time.Duration
	// GoroutineGrowthPerMinute is the slope of the pipeline's goroutines
	// minus one per active stream.
	GoroutineGrowthPerMinute float64
	// FDGrowthPer10Minutes is the slope of the process's open FDs.
	FDGrowthPer10Minutes float64
	// LinesInWindow and LinesPerSecond describe what was read in the window.
	LinesInWindow  int64
	LinesPerSecond float64
	// GapsInWindow counts stretches of log found gone when capture resumed.
	GapsInWindow int64
	// OpensInWindow counts the streams opened in the window, and
	// OpenWaitInWindow how long they waited in all for the process-wide
	// open rate.
	OpensInWindow    int64
	OpenWaitInWindow time.Duration
	// Sinks holds each sink's sent and dropped lines in the window.
	Sinks []SinkWindow
}

// SinkWindow is one sink's deliveries within the health window.
type SinkWindow struct {
	Name    string
	Sent    int64
	Dropped int64
	// Rejected are the dropped lines the destination refused.
	Rejected int64
}

// Gap is a stretch of a container's log that was gone when capture resumed.
type Gap struct {
	Container string
	From, To  time.Time
	// Bytes is how much of the log was lost, where it is known (a file the
	// kubelet deleted or truncated before it was read to its end).
	Bytes int64
}

// Agents is what the operator knows of the node agents that run a
// pipeline's workers on the nodes of its pods.
type Agents struct {
	// Nodes is how many nodes run pods the pipeline selects; Reporting how
	// many of their agents reported within the staleness bound.
	Nodes     int
	Reporting int
	// Missing are the nodes whose agent never reported; Stale those whose
	// last report is older than StaleAfter. Both are sorted.
	Missing []string
	Stale   []string
	// StaleAfter is the staleness bound.
	StaleAfter time.Duration
	// GoroutineGrowthNode and FDGrowthNode are the nodes whose agents
	// measured the steepest goroutine and FD growth, which the pipeline's
	// Window carries.
	GoroutineGrowthNode string
	FDGrowthNode        string
	// Lagging are the nodes with the most unread bytes, worst first.
	Lagging []NodeLag
}

// NodeLag is a pipeline's unread bytes on one node.
type NodeLag struct {
	Node        string
	UnreadBytes int64
}
