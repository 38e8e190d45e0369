package workers

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/log-capturer/log-capturer/capture"
)

// tracker holds one pipeline's per-container positions: the committed one
// (every sink acknowledged every line up to it) and the sent one (a sink
// began to send the lines up to it to its destination, so they may have
// arrived there). It outlives the pipeline's workers
// across configuration changes, is loaded from the PositionStore when the
// workers first start in this replica, and is written back by the pipeline's
// positions writer.
//
// It also tracks the lines in flight: a container's committed position
// advances to a line's position only when that line and every earlier line
// of the container are acknowledged, whatever order the sinks acknowledge in.
type tracker struct {
	mu      sync.Mutex
	entries map[containerKey]*posEntry
	dirty   bool
	loaded  bool
	state   capture.PositionsStatus
	// stage, when set, writes the positions where a restart after a kill
	// of the process finds them; Flush calls it after sent positions moved.
	// Guarded by mu.
	stage func()
	// writeMu makes stages and saves one at a time, each of the positions
	// as they were when it began: a later write never holds older ones.
	writeMu sync.Mutex
}

// posEntry is one container's positions and its lines in flight.
type posEntry struct {
	pod string
	// node is where the container was last selected ("" when it was not
	// since its position was loaded).
	node      string
	committed Position
	sent      Position
	// resumed is set for entries loaded from the store: their sent position
	// tells which re-read lines may be duplicates.
	resumed bool
	// goneSince is when the container stopped being selected; zero while it is.
	goneSince time.Time
	// inflight are the container's records handed to the sinks and not yet
	// committed, oldest first, from index head.
	inflight []*tracked
	head     int
}

func newTracker() *tracker {
	return &tracker{entries: map[containerKey]*posEntry{}}
}

// entry returns the container's entry, creating it.
func (ps *tracker) entry(k containerKey, pod string) *posEntry {
	e := ps.entries[k]
	if e == nil {
		e = &posEntry{pod: pod}
		ps.entries[k] = e
	}
	return e
}

// resumeFrom returns where a newly selected container resumes: its committed
// position and, when it was loaded from the store, the sent position up to
// which re-read lines are possible duplicates. ok is false for a container
// without a position; start is then recorded as its committed position.
func (ps *tracker) resumeFrom(k containerKey, pod, node string, start Position) (pos, dupUntil Position, ok bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if e := ps.entries[k]; e != nil {
		e.goneSince, e.node = time.Time{}, node
		if e.resumed && e.sent.beyond(e.committed) {
			dupUntil = e.sent
		}
		return e.committed, dupUntil, true
	}
	e := ps.entry(k, pod)
	e.committed, e.sent, e.node = start, start, node
	ps.dirty = true
	return start, Position{}, false
}

// offer takes a position handed over by the container's previous reader
// when it is further than the container's own: a position in timestamps
// only, so a file reader finds its file by time and skips what was
// delivered. A container not selected now keeps it until it is.
func (ps *tracker) offer(cp capture.ContainerPosition) {
	k := containerKey{uid: types.UID(cp.UID), name: cp.Container}
	pos := Position{Since: cp.Since, Count: cp.Count, First: cp.First, Last: cp.Last, LastRun: cp.LastRun}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	e := ps.entries[k]
	if e != nil && (e.committed.beyond(pos) || e.head < len(e.inflight)) {
		return // its own is further, or it is being read
	}
	if e == nil {
		e = ps.entry(k, cp.Pod)
		e.goneSince = time.Now() // kept for the retention period unless selected
	}
	e.committed, e.sent, e.resumed = pos, pos, false
	ps.dirty = true
}

// handed returns the committed positions of the containers last selected
// on node (every node when node is empty), and of those loaded from the
// store and not selected since (their node is not known: the next reader
// keeps those it selects), as handed to their next reader, and whether
// every one of them is settled: no line of theirs in flight.
func (ps *tracker) handed(node string) ([]capture.ContainerPosition, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []capture.ContainerPosition
	settled := true
	for k, e := range ps.entries {
		if node != "" && e.node != node && e.node != "" {
			continue
		}
		if e.head < len(e.inflight) {
			settled = false
		}
		c := e.committed
		if c.Since.IsZero() && c.Count == 0 {
			continue // nothing delivered yet: the next reader starts as new
		}
		out = append(out, capture.ContainerPosition{UID: string(k.uid), Container: k.name, Pod: e.pod,
			Since: c.Since, Count: c.Count, First: c.First, Last: c.Last, LastRun: c.LastRun})
	}
	slices.SortFunc(out, func(a, b capture.ContainerPosition) int {
		return strings.Compare(a.UID+"/"+a.Container, b.UID+"/"+b.Container)
	})
	return out, settled
}

// track records that r, with the position after it, is handed to n sinks.
func (ps *tracker) track(r *tracked, n int) {
	r.tracker = ps
	r.pending.Store(int32(n)) //nolint:gosec // a pipeline has a handful of sinks
	ps.mu.Lock()
	defer ps.mu.Unlock()
	e := ps.entry(r.key, r.Pod)
	e.inflight = append(e.inflight, r)
	if n == 0 {
		ps.commitAcked(e)
	}
}

// sending moves the container's sent position to r's when it is beyond it,
// and tells whether it moved.
func (ps *tracker) sending(r *tracked) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	e := ps.entries[r.key]
	if e == nil || e.sent.beyond(r.pos) {
		return false
	}
	e.sent = r.pos
	ps.dirty = true
	return true
}

// Flush stages the positions after Sending moved sent positions, so that a
// restart after a kill counts the lines sent again.
func (ps *tracker) Flush() {
	ps.mu.Lock()
	stage := ps.stage
	ps.mu.Unlock()
	if stage != nil {
		stage()
	}
}

// setStage sets what Flush calls, nil for nothing.
func (ps *tracker) setStage(stage func()) {
	ps.mu.Lock()
	ps.stage = stage
	ps.mu.Unlock()
}

// commitAcked commits the container's acknowledged records from the oldest on.
func (ps *tracker) commitAcked(e *posEntry) {
	moved := false
	for e.head < len(e.inflight) && e.inflight[e.head].pending.Load() <= 0 {
		e.committed = e.inflight[e.head].pos
		e.inflight[e.head] = nil
		e.head++
		moved = true
	}
	if moved {
		ps.dirty = true
	}
	switch {
	case e.head == len(e.inflight):
		e.inflight, e.head = e.inflight[:0], 0
	case e.head > 1024 && 2*e.head > len(e.inflight):
		n := copy(e.inflight, e.inflight[e.head:])
		clear(e.inflight[n:])
		e.inflight, e.head = e.inflight[:n], 0
	case len(e.inflight)-e.head > 4096 && len(e.inflight) == cap(e.inflight):
		e.collapse()
	}
}

// collapse shortens the records in flight behind an unacknowledged one (a
// sink retrying while another one acknowledges more lines): of each run of
// acknowledged records only the last matters.
func (e *posEntry) collapse() {
	out := e.inflight[:e.head]
	live := e.inflight[e.head:]
	for i, r := range live {
		done := r.pending.Load() <= 0
		if done && i+1 < len(live) && live[i+1].pending.Load() <= 0 {
			continue
		}
		out = append(out, r)
	}
	clear(e.inflight[len(out):])
	e.inflight = out
}

// ack is called when a record's last sink is done with it.
func (ps *tracker) ack(k containerKey) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if e := ps.entries[k]; e != nil {
		ps.commitAcked(e)
	}
}

// retain marks which containers are selected now: the others' positions
// are kept for the retention period after they were last selected.
func (ps *tracker) retain(selected map[containerKey]bool, now time.Time) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k, e := range ps.entries {
		switch {
		case selected[k]:
			if !e.goneSince.IsZero() {
				e.goneSince = time.Time{}
				ps.dirty = true
			}
		case e.goneSince.IsZero():
			e.goneSince = now
			ps.dirty = true
		}
	}
}

// changes returns the stored form of the positions when they changed since
// the last call, pruning containers gone for longer than retention.
func (ps *tracker) changes(now time.Time, retention time.Duration) ([]storedPosition, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if !ps.dirty {
		return nil, false
	}
	ps.dirty = false
	return ps.snapshotLocked(now, retention), true
}

// snapshot returns the stored form of the positions, pruning containers
// gone for longer than retention, and leaves them to be saved.
func (ps *tracker) snapshot(now time.Time, retention time.Duration) []storedPosition {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.snapshotLocked(now, retention)
}

func (ps *tracker) snapshotLocked(now time.Time, retention time.Duration) []storedPosition {
	out := make([]storedPosition, 0, len(ps.entries))
	for k, e := range ps.entries {
		if !e.goneSince.IsZero() && now.Sub(e.goneSince) > retention && e.head == len(e.inflight) {
			delete(ps.entries, k)
			continue
		}
		sent := e.sent
		if !sent.beyond(e.committed) {
			sent = e.committed
		}
		out = append(out, storedPosition{Key: k, Pod: e.pod, Committed: e.committed, Sent: sent, GoneSince: e.goneSince})
	}
	return out
}

// markDirty makes the next changes return the positions even if unchanged.
func (ps *tracker) markDirty() {
	ps.mu.Lock()
	ps.dirty = true
	ps.mu.Unlock()
}

// restore replaces the positions with what the store held.
func (ps *tracker) restore(stored []storedPosition) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, s := range stored {
		e := ps.entry(s.Key, s.Pod)
		e.committed, e.sent, e.goneSince, e.resumed = s.Committed, s.Sent, s.GoneSince, true
	}
}

func (ps *tracker) setState(s capture.PositionsStatus) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	// A reset stays visible: the positions it lost are not coming back.
	if ps.state.Reason == capture.PositionsReset && s.Reason == capture.PositionsStored {
		s.Reason, s.Message = capture.PositionsReset, ps.state.Message
	}
	ps.state = s
}

func (ps *tracker) status() capture.PositionsStatus {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.state
}

// tracked is a record as the pipeline tracks it: the container it came
// from, the container's position after it, and how many sinks have not
// acknowledged it yet. Sinks see only the embedded Record, whose Acker is
// the tracked record itself.
type tracked struct {
	capture.Record
	key     containerKey
	pos     Position
	tracker *tracker
	pending atomic.Int32
}

// Sending is a sink's notice that it is about to send the record; the
// tracker is returned to be flushed when the sent position moved.
func (t *tracked) Sending() capture.Flusher {
	if t.tracker != nil && t.tracker.sending(t) {
		return t.tracker
	}
	return nil
}

// Ack is one sink's acknowledgement; the last one commits what it can.
func (t *tracked) Ack() {
	if t.pending.Add(-1) == 0 && t.tracker != nil {
		t.tracker.ack(t.key)
	}
}

// isLoaded tells whether the positions were loaded from the store.
func (ps *tracker) isLoaded() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.loaded
}

// filePosition is a selected container's acknowledged position in the
// kubelet's files.
type filePosition struct {
	key containerKey
	pod string
	pos Position
}

// filePositions returns the acknowledged file positions of the selected
// containers read from files (for one with no line acknowledged yet, the
// position after its first line in flight).
func (ps *tracker) filePositions() []filePosition {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []filePosition
	for k, e := range ps.entries {
		if !e.goneSince.IsZero() {
			continue
		}
		pos := e.committed
		if pos.Log == "" && e.head < len(e.inflight) {
			// Nothing acknowledged in the files yet (a sink dead from the
			// start): from the first line in flight, one line short.
			pos = e.inflight[e.head].pos
		}
		if pos.Log != "" {
			out = append(out, filePosition{key: k, pod: e.pod, pos: pos})
		}
	}
	return out
}
