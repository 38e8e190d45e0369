package capture

import "time"

// TruncatedMarker ends a line cut to a maximum size (the pipeline's line
// cap, a destination's own limit), so that a reader sees it was cut.
const TruncatedMarker = "…[truncated by log-capturer]"

// Record is one log line with where it came from.
type Record struct {
	// Time is the timestamp the container runtime gave the line.
	Time time.Time
	// Line is the line without its timestamp and trailing newline. Bytes
	// are passed through as they were written, valid UTF-8 or not.
	Line      string
	Namespace string
	Pod       string
	Container string
	Node      string
	// Stream is "stdout" or "stderr" when the source knows it (the
	// kubelet's files), empty otherwise (the pods/log API merges them).
	Stream string
	// Labels are the pod labels the pipeline asks for.
	Labels map[string]string

	// Acker is told when a sink is done with the record; the engine sets it
	// for the records it tracks. Nil for records that are not tracked.
	Acker Acker
}

// Acker receives the acknowledgements of one record. Every sink that was
// given the record calls Ack once, in any order, when it delivered the
// record or dropped it under the policy the user chose and counted it; never
// for a record it gave up on because it was stopped. The position that makes
// a restart skip the record advances only when every sink acknowledged it
// and every line before it.
type Acker interface {
	Ack()
}

// Sender is implemented by Ackers that want to know, before a sink sends a
// record to its destination, that it may arrive there from now on.
type Sender interface {
	// Sending marks the record as on its way. It returns what must be
	// flushed once the batch is marked, or nil when nothing changed.
	Sending() Flusher
}

// Flusher makes the marks of Sending last before a batch is sent.
type Flusher interface {
	Flush()
}

// Sending tells the engine that a sink is about to send batch to its
// destination; sinks call it before every attempt. When it returns, the
// engine has recorded (for a store that can, across a kill of the process)
// that these records may have arrived, so a restart that reads them again
// counts them as possible duplicates.
func Sending(batch []*Record) {
	var last Flusher
	for _, r := range batch {
		s, ok := r.Acker.(Sender)
		if !ok {
			continue
		}
		if f := s.Sending(); f != nil && f != last {
			if last != nil {
				last.Flush()
			}
			last = f
		}
	}
	if last != nil {
		last.Flush()
	}
}

// Ack acknowledges r on behalf of one sink; records without an Acker ignore it.
func (r *Record) Ack() {
	if r.Acker != nil {
		r.Acker.Ack()
	}
}

// AckAll acknowledges every record of a batch.
func AckAll(batch []*Record) {
	for _, r := range batch {
		r.Ack()
	}
}
