package capture

import (
	"context"
	"time"
)

// Sink receives every record of a pipeline, in order per container. Write
// blocks while the sink cannot take more (backpressure) and returns the
// context's error when ctx ends first. Run is the sink's sender: the
// pipeline runs it in a goroutine it owns, and it returns once Close has
// drained it or ctx ended (a sink without a sender returns at once). Close
// flushes and releases the sink; it is called once, after the last Write.
type Sink interface {
	Write(ctx context.Context, r *Record) error
	Run(ctx context.Context)
	Close(ctx context.Context) error
}

// SinkStats are what a sink reports about its deliveries.
type SinkStats struct {
	Name          string
	SentLines     int64
	SentBytes     int64
	FailedBatches int64
	Retries       int64
	DroppedLines  int64
	// RejectedLines are the dropped lines the destination refused for good
	// (a 4xx other than 429); LastRejected is when, and LastRejection what
	// it said.
	RejectedLines int64
	LastRejected  time.Time
	LastRejection string
	QueueBytes    int64
	QueueMaxBytes int64
	LastSuccess   time.Time
	// FailingSince is when the current run of failed sends began, zero
	// while the sink delivers.
	FailingSince time.Time
	LastError    string
	// MemoryShareLimited counts lines that found the namespace's share of
	// the process's memory budget full, LastMemoryShareLimited when the
	// last did. NamespaceQueuedBytes is what the namespace's queues hold
	// now, of NamespaceShareBytes, its share of MemoryBudgetBytes divided
	// between BudgetNamespaces namespaces (zero when there is no budget).
	MemoryShareLimited     int64
	LastMemoryShareLimited time.Time
	NamespaceQueuedBytes   int64
	NamespaceShareBytes    int64
	MemoryBudgetBytes      int64
	BudgetNamespaces       int
	// WhenFull is the sink's policy for a full buffer or share.
	WhenFull string
}

// Plus is a and b of the same sink summed (two pipelines of a namespace,
// or one pipeline on two nodes): counts and queues add up, the latest
// rejection, success and memory-share hit win, and the sink fails since
// the earlier of their failures. The namespace's budget facts and WhenFull
// stay a's: what they mean summed depends on what is summed.
func (a SinkStats) Plus(b SinkStats) SinkStats {
	a.SentLines += b.SentLines
	a.SentBytes += b.SentBytes
	a.FailedBatches += b.FailedBatches
	a.Retries += b.Retries
	a.DroppedLines += b.DroppedLines
	a.RejectedLines += b.RejectedLines
	if b.LastRejected.After(a.LastRejected) {
		a.LastRejected, a.LastRejection = b.LastRejected, b.LastRejection
	}
	a.MemoryShareLimited += b.MemoryShareLimited
	if b.LastMemoryShareLimited.After(a.LastMemoryShareLimited) {
		a.LastMemoryShareLimited = b.LastMemoryShareLimited
	}
	a.QueueBytes += b.QueueBytes
	a.QueueMaxBytes += b.QueueMaxBytes
	if b.LastSuccess.After(a.LastSuccess) {
		a.LastSuccess = b.LastSuccess
	}
	if !b.FailingSince.IsZero() && (a.FailingSince.IsZero() || b.FailingSince.Before(a.FailingSince)) {
		a.FailingSince, a.LastError = b.FailingSince, b.LastError
	}
	return a
}

// PlusSameBudget is Plus for two pipelines' numbers of one sink in one
// process: they share the process's memory budget, so its facts are not
// summed but b's, the latest word on it.
func (a SinkStats) PlusSameBudget(b SinkStats) SinkStats {
	a = a.Plus(b)
	a.NamespaceQueuedBytes, a.NamespaceShareBytes = b.NamespaceQueuedBytes, b.NamespaceShareBytes
	a.MemoryBudgetBytes, a.BudgetNamespaces, a.WhenFull = b.MemoryBudgetBytes, b.BudgetNamespaces, b.WhenFull
	return a
}

// PlusOtherBudget is Plus for one sink's numbers of two processes (two
// nodes' agents, or the operator and the agents): each has a budget of its
// own, so the budget facts add up too, over at most the most namespaces one
// of them divides its budget between.
func (a SinkStats) PlusOtherBudget(b SinkStats) SinkStats {
	a = a.Plus(b)
	a.NamespaceQueuedBytes += b.NamespaceQueuedBytes
	a.NamespaceShareBytes += b.NamespaceShareBytes
	a.MemoryBudgetBytes += b.MemoryBudgetBytes
	a.BudgetNamespaces = max(a.BudgetNamespaces, b.BudgetNamespaces)
	return a
}

// StatsReporter is a Sink that reports SinkStats.
type StatsReporter interface {
	Stats() SinkStats
}

// SinkFactory builds the sink of one pipeline ("<namespace>/<name>") for one SinkConfig.
type SinkFactory func(pipeline string, cfg SinkConfig) (Sink, error)
