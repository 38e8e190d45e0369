package workers

import (
	"bytes"
	"time"

	"github.com/log-capturer/log-capturer/capture/crifile"
)

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
	// Last is the timestamp of the last delivered line, and LastRun how many
	// lines in a row, up to the last delivered one, carry exactly Last. When
	// the kubelet has rotated the first counted lines away but the log still
	// holds the last delivered one, a reopen skips through it instead.
	Last    time.Time `json:"last"`
	LastRun int64     `json:"lastRun"`
	// Log and File locate a container read from the kubelet's files: the
	// base of the instance's log ("<restartCount>.log") and the position in
	// it after the last delivered record. Empty for a container read
	// through the API; the timestamps above are kept for both, so that
	// either source can resume from them.
	Log  string           `json:"log,omitempty"`
	File crifile.Position `json:"file,omitzero"`
}

// deliver records the delivery of a line with timestamp ts.
func (p *Position) deliver(ts time.Time) {
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
	if ts.Equal(p.Last) {
		p.LastRun++
	} else {
		p.LastRun = 1
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

	// last and lastRun locate the last delivered line; through is set while
	// the lines up to it are skipped (the kubelet rotated the first counted
	// lines away), seen counts the lines at last skipped so far.
	last    time.Time
	lastRun int64
	through bool
	seen    int64
	// gap is set when the last delivered line is not in the log either: the
	// kubelet rotated it away with whatever followed it.
	gap bool
}

func newResumer(p Position) resumer {
	r := resumer{since: p.Since, first: p.First, skip: p.Count, last: p.Last, lastRun: p.LastRun}
	if p.Last.Before(p.First) {
		r.lastRun = 0 // the last line came out of order: locate by count only
	}
	return r
}

// delivered tells whether a line with timestamp ts was delivered before.
func (r *resumer) delivered(ts time.Time) bool {
	if r.through {
		return r.skipThrough(ts)
	}
	if r.skip == 0 || ts.Before(r.since) {
		return false
	}
	// Lines are delivered in log order, so a line after the last delivered
	// one was not delivered (were timestamps out of order by microseconds,
	// it is sent twice, never lost).
	afterLast := r.lastRun > 0 && ts.After(r.last)
	if !r.checked {
		r.checked = true
		switch {
		case ts.Equal(r.first) && !afterLast:
			// The counted log.
		case r.lastRun > 0 && !afterLast:
			// Not after the last delivered line, so the same container
			// instance (a new one writes only later): the kubelet rotated
			// the first counted lines away, the rest are still here.
			r.skip, r.through = 0, true
			return r.skipThrough(ts)
		default:
			// Another log than the one counted: a new container instance,
			// or the kubelet rotated every delivered line away.
			r.skip, r.replaced = 0, true
			return false
		}
	}
	if afterLast {
		// Fewer counted lines than expected before it: the kubelet rotated
		// some away. Nothing from here on was delivered.
		r.skip = 0
		return false
	}
	r.skip--
	return true
}

// skipThrough skips the lines up to the last delivered one.
func (r *resumer) skipThrough(ts time.Time) bool {
	switch {
	case ts.Equal(r.last):
		r.seen++
		if r.seen >= r.lastRun {
			r.through = false
		}
		return true
	case ts.After(r.last):
		// Past it. Without any line at its timestamp, it was rotated away,
		// and with it whatever followed it in the old file.
		r.through, r.gap = false, r.seen == 0
		return false
	}
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
