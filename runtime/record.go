package runtime

import (
	"bytes"
	"sync/atomic"
	"time"
)

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
	// Labels are the pod labels the pipeline asks for.
	Labels map[string]string

	// Delivery tracking, set by the pipeline: the container, its position
	// after this line, and how many sinks have not acknowledged it yet.
	key       containerKey
	pos       Position
	positions *positions
	pending   int32
}

// Ack tells the pipeline that one of its sinks is done with r: it delivered
// r, or dropped it under the policy the user chose and counted it. Every
// sink that was given r calls Ack once, in any order, and never for a record
// it gave up on because it was stopped: the position that makes a restart
// skip r advances only when every sink acknowledged r and every line before
// it. Records that did not come from a pipeline ignore Ack.
func (r *Record) Ack() {
	if r.positions != nil && atomic.AddInt32(&r.pending, -1) == 0 {
		r.positions.ack(r.key)
	}
}

// AckAll acknowledges every record of a batch.
func AckAll(batch []*Record) {
	for _, r := range batch {
		r.Ack()
	}
}

// Position is where a container's capture stands, in the terms of the
// pods/log API, whose sinceTime has one-second precision: Since is the
// largest whole second of any delivered line's timestamp, and Count is how
// many delivered lines carry a timestamp at or after Since, in stream order.
// Reopening with sinceTime=Since and skipping Count lines resumes exactly
// after the last delivered line, also when several lines share a timestamp
// or timestamps within the second are out of order.
type Position struct {
	Since time.Time `json:"since"`
	Count int64     `json:"count"`
	// First is the timestamp of the first of those Count lines. A reopened
	// stream whose first line at or after Since has another timestamp is not
	// the log that was counted (the container restarted): nothing is skipped.
	First time.Time `json:"first"`
	// Last is the timestamp of the last delivered line.
	Last time.Time `json:"last"`
}

// advance records the delivery of a line with timestamp ts.
func (p *Position) advance(ts time.Time) {
	sec := ts.Truncate(time.Second)
	switch {
	case sec.After(p.Since):
		p.Since, p.Count, p.First = sec, 1, ts
	case !ts.Before(p.Since):
		if p.Count == 0 {
			p.First = ts
		}
		p.Count++
	}
	p.Last = ts
}

func (p Position) isZero() bool { return p.Since.IsZero() && p.Count == 0 }

// beyond tells whether p is at or after q.
func (p Position) beyond(q Position) bool {
	return p.Since.After(q.Since) || p.Since.Equal(q.Since) && p.Count >= q.Count
}

// resumer skips the lines of a reopened stream that were delivered before.
type resumer struct {
	since   time.Time
	first   time.Time
	skip    int64
	checked bool
	// replaced is set when the stream turned out not to be the counted log.
	replaced bool
}

func newResumer(p Position) resumer { return resumer{since: p.Since, first: p.First, skip: p.Count} }

// delivered tells whether a line with timestamp ts was delivered before.
func (r *resumer) delivered(ts time.Time) bool {
	if r.skip == 0 || ts.Before(r.since) {
		return false
	}
	if !r.checked {
		r.checked = true
		if !ts.Equal(r.first) {
			// Another log than the one counted: a new container instance,
			// or the kubelet rotated the counted lines away.
			r.skip, r.replaced = 0, true
			return false
		}
	}
	r.skip--
	return true
}

// splitTimestamp splits a line of a pods/log stream with timestamps=true
// into its RFC3339Nano timestamp and the rest. ok is false when the line does
// not start with a timestamp.
func splitTimestamp(line []byte) (ts time.Time, rest []byte, ok bool) {
	i := bytes.IndexByte(line, ' ')
	if i <= 0 {
		return time.Time{}, line, false
	}
	ts, err := time.Parse(time.RFC3339Nano, string(line[:i]))
	if err != nil {
		return time.Time{}, line, false
	}
	return ts, line[i+1:], true
}
