package v1alpha1

// Condition types. Ready is the positive summary; Reconciling and Stalled
// follow kstatus and are present only while True.
const (
	// ConditionReady summarizes whether the object does its job.
	ConditionReady = "Ready"
	// ConditionReconciling is True while the controller works towards the spec.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True while the controller cannot make progress
	// without a change from the user.
	ConditionStalled = "Stalled"
	// ConditionSinksReady tells whether every SinkTarget the pipeline names
	// exists and is fully resolved.
	ConditionSinksReady = "SinksReady"
	// ConditionWorkersHealthy tells whether the pipeline's workers run
	// without leaking goroutines or file descriptors and keep up with the pool.
	ConditionWorkersHealthy = "WorkersHealthy"
	// ConditionFlowHealthy tells whether lines flow from the pods to the sinks.
	ConditionFlowHealthy = "FlowHealthy"
	// ConditionPositionsStored tells whether the containers' positions are
	// stored in the cluster, so that a restart resumes without loss.
	ConditionPositionsStored = "PositionsStored"
)

// Condition reasons. Every reason is CamelCase and used with a message that
// says what was found, with numbers where there are any.
const (
	// ReasonWorkersRunning means the pipeline's workers run with the current spec.
	ReasonWorkersRunning = "WorkersRunning"
	// ReasonProgressing means the controller is applying a new spec.
	ReasonProgressing = "Progressing"
	// ReasonHandingOver means a new configuration waits for the previous
	// workers to drain their sinks and store their positions.
	ReasonHandingOver = "HandingOver"
	// ReasonOutsideOperatorLimits means the spec asks for more than the
	// operator's admin allows (a rotation interval below the operator's
	// minimum, say).
	ReasonOutsideOperatorLimits = "OutsideOperatorLimits"
	// ReasonSuspended means spec.suspend is true and no worker runs.
	ReasonSuspended = "Suspended"
	// ReasonDeleting means the object is being deleted.
	ReasonDeleting = "Deleting"
	// ReasonSinksResolved means every named SinkTarget exists and its
	// credentials were read.
	ReasonSinksResolved = "SinksResolved"
	// ReasonSinkNotFound means a SinkTarget named in spec.sinks does not exist.
	ReasonSinkNotFound = "SinkNotFound"
	// ReasonSinkInvalid means a named SinkTarget's spec cannot be used.
	ReasonSinkInvalid = "SinkInvalid"
	// ReasonSecretNotFound means a referenced Secret does not exist.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonPolicyViolation means a SinkTarget does what the CapturePolicy
	// of its namespace does not allow; the message names the policy and
	// the rule.
	ReasonPolicyViolation = "PolicyViolation"
	// ReasonSecretNotAllowed means a referenced Secret does not name the
	// SinkTarget in its logs.capturer.dev/sink-targets annotation.
	ReasonSecretNotAllowed = "SecretNotAllowed"
	// ReasonSecretKeyNotFound means a referenced Secret lacks the named key.
	ReasonSecretKeyNotFound = "SecretKeyNotFound"
	// ReasonInvalidTLS means a referenced certificate or key cannot be parsed.
	ReasonInvalidTLS = "InvalidTLS"
	// ReasonInvalidSpec means the spec passed schema validation but cannot be
	// used (for example a selector that does not parse).
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonApplyFailed means the workers could not be (re)configured; the
	// controller retries with backoff.
	ReasonApplyFailed = "ApplyFailed"
	// ReasonConfigurationValid means the SinkTarget's configuration and
	// credentials are complete.
	ReasonConfigurationValid = "ConfigurationValid"
	// ReasonWorkersNotRunning means no worker of the pipeline runs, for the
	// reason the message gives.
	ReasonWorkersNotRunning = "WorkersNotRunning"
	// ReasonAgentsMissing means nodes that run pods the pipeline selects
	// have no node agent reporting (it never did, or its last report is
	// older than the staleness bound); the message names the nodes.
	ReasonAgentsMissing = "AgentsMissing"
	// ReasonEndpointUnreachable means the sink's cheap probe (Loki's /ready,
	// a File sink's path) failed.
	ReasonEndpointUnreachable = "EndpointUnreachable"
	// ReasonEndpointProbing means the sink's configuration is valid and its
	// endpoint is being probed, off the reconcile path.
	ReasonEndpointProbing = "EndpointProbing"
	// ReasonDeliveryFailing means the sink's sends fail and are being retried.
	ReasonDeliveryFailing = "DeliveryFailing"
	// ReasonDeliveryRejected means the destination refused batches for good
	// (a 4xx other than 429): their lines are dropped and counted, not
	// retried. On a LogPipeline's FlowHealthy it is set while the window
	// holds rejections; on a SinkTarget's Ready while the latest outcome of
	// its sends is a rejection.
	ReasonDeliveryRejected = "DeliveryRejected"
	// ReasonHealthy means the measured numbers are within the thresholds.
	ReasonHealthy = "Healthy"
	// ReasonDegraded means the pipeline works but a health condition is
	// False; Ready stays True so GitOps shows it degraded, not failed.
	ReasonDegraded = "Degraded"
	// ReasonGoroutineLeak means the workers' goroutines not explained by
	// open streams grow faster than spec.health.maxGoroutineGrowthPerMinute.
	ReasonGoroutineLeak = "GoroutineLeak"
	// ReasonFDLeak means the process's open file descriptors grow faster
	// than spec.health.maxFDGrowthPer10Minutes.
	ReasonFDLeak = "FDLeak"
	// ReasonStreamPoolSaturated means containers wait for a stream slot
	// longer than one rotation interval.
	ReasonStreamPoolSaturated = "StreamPoolSaturated"
	// ReasonRotationRateLimited means streams wait long for the operator's
	// process-wide log-open rate (--log-open-rate): the pipeline's
	// containers ÷ rotation interval, with every other namespace's, need
	// more opens per second than it allows.
	ReasonRotationRateLimited = "RotationRateLimited"
	// ReasonNoLogsDelivered means lines were read but no sink delivered any
	// for spec.health.noDeliveryTimeout.
	ReasonNoLogsDelivered = "NoLogsDelivered"
	// ReasonSomeDataDropped means a sink dropped lines within the window.
	ReasonSomeDataDropped = "SomeDataDropped"
	// ReasonAllDataDropped means every sink dropped everything it got
	// within the window.
	ReasonAllDataDropped = "AllDataDropped"
	// ReasonMemoryShareExhausted means the namespace's queued lines fill its
	// share of the operator's memory budget: Block sinks hold their readers
	// back (nothing is lost), Drop sinks drop and count.
	ReasonMemoryShareExhausted = "MemoryShareExhausted"
	// ReasonBufferFillingUp means a sink's queue is over 80% full.
	ReasonBufferFillingUp = "BufferFillingUp"
	// ReasonSinkUnavailable means a sink has failed for longer than its
	// retry budget (retry.maxBackoff).
	ReasonSinkUnavailable = "SinkUnavailable"
	// ReasonIdle means nothing is selected or nothing was written in the
	// window; this is not an error.
	ReasonIdle = "Idle"
	// ReasonLogsUnrecoverable means that when a container's capture resumed,
	// the kubelet no longer had the lines after its position (it rotated
	// them away, or the container restarted more than once): those lines
	// are lost, and the message says where.
	ReasonLogsUnrecoverable = "LogsUnrecoverable"
	// ReasonPositionsStored means the positions are written to the
	// pipeline's positions ConfigMap.
	ReasonPositionsStored = "PositionsStored"
	// ReasonPositionsLoading means the workers have not read the stored
	// positions yet.
	ReasonPositionsLoading = "PositionsLoading"
	// ReasonPositionsReset means the stored positions could not be read;
	// containers started from spec.startAt and positions are stored anew.
	ReasonPositionsReset = "PositionsReset"
	// ReasonPositionsForeign means a ConfigMap of the positions' name exists
	// that log-capturer did not write; it is left alone and positions are
	// kept in memory only until it is removed.
	ReasonPositionsForeign = "PositionsForeign"
	// ReasonPositionsWriteFailed means writing the positions failed; it is
	// retried every write interval.
	ReasonPositionsWriteFailed = "PositionsWriteFailed"
	// ReasonPositionsInMemory means the workers run without a position store.
	ReasonPositionsInMemory = "PositionsInMemory"
	// ReasonAwaitingMetrics means the workers have not reported enough
	// samples yet for a health verdict.
	ReasonAwaitingMetrics = "AwaitingMetrics"
)

// SetObservedGeneration records the generation the status was computed for.
func (p *LogPipeline) SetObservedGeneration(g int64) { p.Status.ObservedGeneration = g }

// SetObservedGeneration records the generation the status was computed for.
func (s *SinkTarget) SetObservedGeneration(g int64) { s.Status.ObservedGeneration = g }
