package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StartAt tells where capture begins for a container the pipeline sees for the
// first time.
// +kubebuilder:validation:Enum=Now;Beginning
type StartAt string

const (
	// StartAtNow captures only lines written after the container was first seen.
	StartAtNow StartAt = "Now"
	// StartAtBeginning captures everything the kubelet still has for the container.
	StartAtBeginning StartAt = "Beginning"
)

// LogPipelineSpec selects pods in the pipeline's own namespace and ships the
// logs of their containers to SinkTargets of the same namespace.
// +kubebuilder:validation:XValidation:rule="!has(self.containers) || !has(self.containers.include) || !has(self.containers.exclude) || !self.containers.include.exists(g, g in self.containers.exclude)",message="a container glob must not be both included and excluded"
type LogPipelineSpec struct {
	// Selector selects the pods of the pipeline's namespace whose containers
	// are captured. An empty or absent selector selects every pod of the
	// namespace. A pipeline never reads another namespace.
	// +optional
	Selector *LabelSelector `json:"selector,omitempty"`

	// Containers narrows the selected pods to containers by name.
	// +optional
	Containers ContainerFilter `json:"containers,omitzero"`

	// Rotation controls how often each container's log stream is closed and
	// reopened.
	// +optional
	// +kubebuilder:default={}
	Rotation RotationSpec `json:"rotation,omitzero"`

	// StreamPool limits how many log streams the pipeline holds open at once.
	// +optional
	// +kubebuilder:default={}
	StreamPool StreamPoolSpec `json:"streamPool,omitzero"`

	// StartAt tells where capture begins for a container seen for the first time.
	// +optional
	// +kubebuilder:default=Now
	StartAt StartAt `json:"startAt,omitempty"`

	// PodLabels lists pod label keys whose values are attached to every record.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=317
	// +kubebuilder:validation:items:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	// +listType=set
	PodLabels []string `json:"podLabels,omitempty"`

	// Sinks names the SinkTargets, in this namespace, that receive every line.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:XValidation:rule="self.all(x, self.exists_one(y, y == x))",message="sink names must be unique"
	Sinks []SinkName `json:"sinks"`

	// Health sets the thresholds the workers' health is judged by.
	// +optional
	// +kubebuilder:default={}
	Health HealthSpec `json:"health,omitzero"`

	// Positions controls how each container's position (where capture
	// stands) is stored, so that a restarted or failed-over operator resumes
	// without loss.
	// +optional
	// +kubebuilder:default={}
	Positions PositionsSpec `json:"positions,omitzero"`

	// Lines limits what one log line may cost.
	// +optional
	// +kubebuilder:default={}
	Lines LinesSpec `json:"lines,omitzero"`

	// Suspend stops the pipeline's workers without deleting the pipeline.
	// When it is set back to false, containers resume from their stored
	// positions.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// PositionsSpec controls the stored positions. They live in the ConfigMap
// "<pipeline>-positions" of the pipeline's namespace, owned by the pipeline.
type PositionsSpec struct {
	// WriteInterval is how often changed positions are written: one write
	// per pipeline per interval, whatever the number of containers, and one
	// more on a clean shutdown. After a crash, at most about this much of
	// each container's log is sent again. Between 1s and 10m.
	// +optional
	// +kubebuilder:default="5s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('10m')",message="positions.writeInterval must be between 1s and 10m"
	WriteInterval metav1.Duration `json:"writeInterval,omitzero"`

	// Retention is how long the position of a container that is no longer
	// selected (its pod was deleted) is kept. Between 1m and 720h.
	// +optional
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('720h')",message="positions.retention must be between 1m and 720h"
	Retention metav1.Duration `json:"retention,omitzero"`
}

// LinesSpec limits the lines a pipeline captures.
type LinesSpec struct {
	// MaxSize is the longest line kept, in bytes of its text. A longer line
	// (a container writing without a newline, a binary blob) is cut to this
	// size and marked "…[truncated by log-capturer]"; the rest of it is
	// skipped as it is read, never held in memory, and the cut is counted
	// in log_capturer_truncated_lines_total. Between 1Ki and 16Mi.
	// +optional
	// +kubebuilder:default="1Mi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('1Ki')) >= 0 && quantity(string(self)).compareTo(quantity('16Mi')) <= 0",message="lines.maxSize must be between 1Ki and 16Mi"
	MaxSize resource.Quantity `json:"maxSize,omitzero"`
}

// SinkName is the name of a SinkTarget in the pipeline's namespace.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
type SinkName string

// ContainerGlob matches container names. `*` matches any run of characters
// and `?` one character; everything else matches itself.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:XValidation:rule="self.matches('^[-a-z0-9*?]+$')",message="a container glob may contain only lowercase letters, digits, '-', '*' and '?'"
type ContainerGlob string

// ContainerFilter selects containers of the selected pods by name.
type ContainerFilter struct {
	// Include lists globs of container names to capture; empty captures all.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=set
	Include []ContainerGlob `json:"include,omitempty"`

	// Exclude lists globs of container names never to capture; it wins over Include.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=set
	Exclude []ContainerGlob `json:"exclude,omitempty"`
}

// RotationSpec controls log stream rotation.
type RotationSpec struct {
	// Interval is how often each log stream is closed and reopened, exactly
	// where it stopped. Between 1s and 24h.
	// +optional
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="rotation.interval must be between 1s and 24h"
	Interval metav1.Duration `json:"interval,omitzero"`
}

// StreamPoolSpec limits concurrent log streams.
type StreamPoolSpec struct {
	// MaxStreams is the most log streams the pipeline holds open at once.
	// When more containers are selected, they take turns at each rotation.
	// +optional
	// +kubebuilder:default=50
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	MaxStreams int32 `json:"maxStreams,omitempty"`
}

// HealthSpec holds the thresholds the pipeline's health conditions use. The
// defaults come from the reference system this project replaces.
type HealthSpec struct {
	// MaxGoroutineGrowthPerMinute is the growth of goroutines not explained by
	// open streams, per minute over the window, from which on the workers
	// are reported as leaking goroutines.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	MaxGoroutineGrowthPerMinute int32 `json:"maxGoroutineGrowthPerMinute,omitempty"`

	// MaxFDGrowthPer10Minutes is the growth of open file descriptors per ten
	// minutes over the window from which on the workers are reported as
	// leaking file descriptors.
	// +optional
	// +kubebuilder:default=50
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	MaxFDGrowthPer10Minutes int32 `json:"maxFDGrowthPer10Minutes,omitempty"`

	// Window is the sliding window growth is measured over. Between 1m and 24h.
	// +optional
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('24h')",message="health.window must be between 1m and 24h"
	Window metav1.Duration `json:"window,omitzero"`

	// NoDeliveryTimeout is how long lines may be read without any being
	// delivered before flow is reported unhealthy. Between 10s and 24h.
	// +optional
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s') && duration(self) <= duration('24h')",message="health.noDeliveryTimeout must be between 10s and 24h"
	NoDeliveryTimeout metav1.Duration `json:"noDeliveryTimeout,omitzero"`
}

// WorkerStatus holds the numbers the pipeline's workers report about
// themselves. Counts are exact: the code that owns a goroutine or stream
// counts it.
type WorkerStatus struct {
	// ObservedAt is when these numbers were taken. Gauges and rates are
	// refreshed when they change; running totals at most once a minute.
	// +optional
	ObservedAt *metav1.Time `json:"observedAt,omitempty"`
	// SelectedContainers is how many containers the pipeline selects.
	// +optional
	SelectedContainers int32 `json:"selectedContainers"`
	// ActiveStreams is how many log streams are open now.
	// +optional
	ActiveStreams int32 `json:"activeStreams"`
	// WaitingStreams is how many selected containers wait for a stream slot.
	// +optional
	WaitingStreams int32 `json:"waitingStreams"`
	// Rotations is how many stream rotations happened since the workers started.
	// +optional
	Rotations int64 `json:"rotations"`
	// Reconnects is how many streams were reopened early since the workers
	// started: the server ended them (a connection cut, a kubelet restart)
	// or an error did. Refreshed at most every 10 seconds.
	// +optional
	Reconnects int64 `json:"reconnects"`
	// Goroutines is how many goroutines the pipeline's workers own.
	// +optional
	Goroutines int32 `json:"goroutines"`
	// OpenFileDescriptors is the operator process's open file descriptors.
	// (Named openFDs until 2026-12, which kubectl describe rendered "Open F Ds".)
	// +optional
	OpenFileDescriptors int32 `json:"openFileDescriptors"`
	// LinesTotal is how many lines the workers read.
	// +optional
	LinesTotal int64 `json:"linesTotal"`
	// BytesTotal is how many bytes of log lines the workers read.
	// +optional
	BytesTotal int64 `json:"bytesTotal"`
	// LinesPerSecond is the read rate over the health window.
	// +optional
	LinesPerSecond int64 `json:"linesPerSecond"`
	// GoroutineGrowthPerMinute is the least-squares slope of the workers'
	// goroutines not explained by open streams, as a decimal string.
	// +optional
	GoroutineGrowthPerMinute string `json:"goroutineGrowthPerMinute,omitempty"`
	// FDGrowthPer10Minutes is the least-squares slope of the process's open
	// file descriptors per ten minutes, as a decimal string.
	// +optional
	FDGrowthPer10Minutes string `json:"fdGrowthPer10Minutes,omitempty"`
	// DroppedLines is how many lines the sinks dropped since the workers started.
	// +optional
	DroppedLines int64 `json:"droppedLines"`
	// LastDeliveryTime is when a sink last delivered a batch.
	// +optional
	LastDeliveryTime *metav1.Time `json:"lastDeliveryTime,omitempty"`
	// Sinks holds each sink's numbers.
	// +optional
	// +listType=map
	// +listMapKey=name
	Sinks []SinkWorkerStatus `json:"sinks,omitempty"`
	// FileContainers is how many of the selected containers are read from
	// the kubelet's log files by node agents rather than through the API.
	// +optional
	FileContainers int32 `json:"fileContainers,omitempty"`
	// UnreadBytes is the lag of the containers read from the kubelet's
	// files: the bytes of their logs after the positions the sinks
	// acknowledged, over every node (read and queued, or not yet read).
	// +optional
	UnreadBytes int64 `json:"unreadBytes,omitempty"`
	// Agents is set when node agents run the pipeline's workers: what the
	// operator knows of the agents on the nodes of the selected pods.
	// +optional
	Agents *AgentsStatus `json:"agents,omitempty"`
}

// AgentsStatus is what the operator knows of the node agents that run a
// pipeline's workers.
type AgentsStatus struct {
	// Nodes is how many nodes run pods the pipeline selects.
	// +optional
	Nodes int32 `json:"nodes"`
	// Reporting is how many of those nodes' agents reported recently.
	// +optional
	Reporting int32 `json:"reporting"`
	// MissingNodes names nodes whose agent never reported (at most
	// MaxNamedNodes of them; Nodes minus Reporting counts them all).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=10
	MissingNodes []string `json:"missingNodes,omitempty"`
	// StaleNodes names nodes whose agent's last report is older than the
	// staleness bound (at most MaxNamedNodes of them).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=10
	StaleNodes []string `json:"staleNodes,omitempty"`
	// LaggingNodes are the nodes furthest behind: the few with the most
	// unread bytes of the pipeline's logs, at least LagNamedBytes each,
	// worst first.
	// +optional
	// +listType=map
	// +listMapKey=node
	// +kubebuilder:validation:MaxItems=3
	LaggingNodes []NodeLag `json:"laggingNodes,omitempty"`
}

// NodeLag is how far behind a pipeline's capture is on one node.
type NodeLag struct {
	// Node is the node's name.
	Node string `json:"node"`
	// UnreadBytes is the bytes of the pipeline's logs on the node after
	// the positions the sinks acknowledged.
	UnreadBytes int64 `json:"unreadBytes"`
}

// MaxNamedNodes bounds the nodes a pipeline's status names.
const MaxNamedNodes = 10

// MaxLaggingNodes bounds the lagging nodes a pipeline's status names.
const MaxLaggingNodes = 3

// LagNamedBytes is the least lag a node is named for: a MiB, more than
// the few batches in flight of a pipeline that keeps up.
const LagNamedBytes = 1 << 20

// SinkWorkerStatus is one sink's numbers for this pipeline.
type SinkWorkerStatus struct {
	// Name of the SinkTarget.
	Name string `json:"name"`
	// SentLines is how many lines it delivered.
	SentLines int64 `json:"sentLines"`
	// FailedBatches is how many send attempts failed.
	FailedBatches int64 `json:"failedBatches"`
	// DroppedLines is how many lines it dropped.
	DroppedLines int64 `json:"droppedLines"`
	// QueueFillPercent is how full its queue is.
	QueueFillPercent int32 `json:"queueFillPercent"`
}

// LogPipelineStatus is the observed state of a LogPipeline.
type LogPipelineStatus struct {
	// ObservedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, SinksReady, WorkersHealthy, FlowHealthy, and
	// Reconciling or Stalled while they are True.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// Workers holds the numbers the workers report.
	// +optional
	Workers *WorkerStatus `json:"workers,omitempty"`

	// Policy is the CapturePolicy whose rules and limits apply to the
	// pipeline's namespace; empty when none does (the operator's flags
	// apply).
	// +optional
	Policy string `json:"policy,omitempty"`
}

// LogPipeline captures the logs of selected pods' containers and ships every
// line to its sinks.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=lp,categories=logging
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Streams",type=integer,JSONPath=`.status.workers.activeStreams`
// +kubebuilder:printcolumn:name="Lines/s",type=integer,JSONPath=`.status.workers.linesPerSecond`
// +kubebuilder:printcolumn:name="Goroutines",type=integer,JSONPath=`.status.workers.goroutines`
// +kubebuilder:printcolumn:name="FDs",type=integer,JSONPath=`.status.workers.openFileDescriptors`
// +kubebuilder:printcolumn:name="Policy",type=string,JSONPath=`.status.policy`,priority=1
// +kubebuilder:printcolumn:name="Files",type=integer,JSONPath=`.status.workers.fileContainers`,priority=1
// +kubebuilder:printcolumn:name="Agents",type=integer,JSONPath=`.status.workers.agents.reporting`,priority=1
// +kubebuilder:printcolumn:name="Unread",type=integer,JSONPath=`.status.workers.unreadBytes`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type LogPipeline struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   LogPipelineSpec   `json:"spec"`
	Status LogPipelineStatus `json:"status,omitempty"`
}

// GetConditions returns the pipeline's status conditions.
func (p *LogPipeline) GetConditions() []metav1.Condition { return p.Status.Conditions }

// SetConditions replaces the pipeline's status conditions.
func (p *LogPipeline) SetConditions(c []metav1.Condition) { p.Status.Conditions = c }

// LogPipelineList is a list of LogPipelines.
// +kubebuilder:object:root=true
type LogPipelineList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LogPipeline `json:"items"`
}
