package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// positions holds one pipeline's per-container positions: the committed one
// (every sink acknowledged every line up to it) and the sent one (the lines
// up to it were handed to the sinks). It outlives the pipeline's workers
// across configuration changes, is loaded from the PositionStore when the
// workers first start in this replica, and is written back by the pipeline's
// positions writer.
//
// It also tracks the lines in flight: a container's committed position
// advances to a line's position only when that line and every earlier line
// of the container are acknowledged, whatever order the sinks acknowledge in.
type positions struct {
	mu      sync.Mutex
	entries map[containerKey]*posEntry
	dirty   bool
	loaded  bool
	state   PositionsStatus
}

// posEntry is one container's positions and its lines in flight.
type posEntry struct {
	pod       string
	committed Position
	sent      Position
	// resumed is set for entries loaded from the store: their sent position
	// tells which re-read lines may be duplicates.
	resumed bool
	// goneSince is when the container stopped being selected; zero while it is.
	goneSince time.Time
	// inflight are the container's records handed to the sinks and not yet
	// committed, oldest first, from index head.
	inflight []*Record
	head     int
}

func newPositions() *positions {
	return &positions{entries: map[containerKey]*posEntry{}}
}

// PositionsStatus is how a pipeline's positions are stored.
type PositionsStatus struct {
	// Reason is one of the PositionsReason constants.
	Reason  string
	Message string
	// Containers is how many containers the stored object holds and Bytes
	// its compressed size.
	Containers int
	Bytes      int
	// LastWrite is when positions were last written.
	LastWrite time.Time
}

// Durable tells whether positions are written to the store now.
func (s PositionsStatus) Durable() bool {
	return s.Reason == PositionsStored || s.Reason == PositionsReset
}

// Reasons of PositionsStatus.
const (
	// PositionsStored means positions are written to the store.
	PositionsStored = "Stored"
	// PositionsNotLoaded means the workers have not read the store yet.
	PositionsNotLoaded = "NotLoaded"
	// PositionsReset means the stored positions could not be read and the
	// workers started from startAt; positions are written anew.
	PositionsReset = "Reset"
	// PositionsForeign means an object of the positions' name exists that the
	// operator did not write; it is left alone and positions are kept in
	// memory only.
	PositionsForeign = "Foreign"
	// PositionsWriteFailed means the last write failed.
	PositionsWriteFailed = "WriteFailed"
	// PositionsInMemory means the runtime has no store (tests, demo).
	PositionsInMemory = "InMemory"
)

// entry returns the container's entry, creating it.
func (ps *positions) entry(k containerKey, pod string) *posEntry {
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
func (ps *positions) resumeFrom(k containerKey, pod string, start Position) (pos, dupUntil Position, ok bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if e := ps.entries[k]; e != nil {
		e.goneSince = time.Time{}
		if e.resumed && e.sent.beyond(e.committed) {
			dupUntil = e.sent
		}
		return e.committed, dupUntil, true
	}
	e := ps.entry(k, pod)
	e.committed, e.sent = start, start
	ps.dirty = true
	return start, Position{}, false
}

// track records that r, with the position after it, is handed to n sinks.
func (ps *positions) track(r *Record, n int) {
	r.positions = ps
	r.pending = int32(n) //nolint:gosec // a pipeline has a handful of sinks
	ps.mu.Lock()
	defer ps.mu.Unlock()
	e := ps.entry(r.key, r.Pod)
	e.sent = r.pos
	e.inflight = append(e.inflight, r)
	if n == 0 {
		ps.advance(e)
	}
}

// advance commits the container's acknowledged records from the oldest on.
func (ps *positions) advance(e *posEntry) {
	moved := false
	for e.head < len(e.inflight) && atomic.LoadInt32(&e.inflight[e.head].pending) <= 0 {
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
		done := atomic.LoadInt32(&r.pending) <= 0
		if done && i+1 < len(live) && atomic.LoadInt32(&live[i+1].pending) <= 0 {
			continue
		}
		out = append(out, r)
	}
	clear(e.inflight[len(out):])
	e.inflight = out
}

// ack is called by Record.Ack when a record's last sink is done with it.
func (ps *positions) ack(k containerKey) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if e := ps.entries[k]; e != nil {
		ps.advance(e)
	}
}

// retain marks which containers are selected now: the others' positions
// are kept for the retention period after they were last selected.
func (ps *positions) retain(selected map[containerKey]bool, now time.Time) {
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

// snapshot returns the stored form of the positions when they changed since
// the last call, pruning containers gone for longer than retention.
func (ps *positions) snapshot(now time.Time, retention time.Duration) ([]storedPosition, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if !ps.dirty {
		return nil, false
	}
	ps.dirty = false
	out := make([]storedPosition, 0, len(ps.entries))
	for k, e := range ps.entries {
		if !e.goneSince.IsZero() && now.Sub(e.goneSince) > retention && e.head == len(e.inflight) {
			delete(ps.entries, k)
			continue
		}
		out = append(out, storedPosition{Key: k, Pod: e.pod, Committed: e.committed, Sent: e.sent, GoneSince: e.goneSince})
	}
	return out, true
}

// markDirty makes the next snapshot return the positions even if unchanged.
func (ps *positions) markDirty() {
	ps.mu.Lock()
	ps.dirty = true
	ps.mu.Unlock()
}

// restore replaces the positions with what the store held.
func (ps *positions) restore(stored []storedPosition) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, s := range stored {
		e := ps.entry(s.Key, s.Pod)
		e.committed, e.sent, e.goneSince, e.resumed = s.Committed, s.Sent, s.GoneSince, true
	}
}

func (ps *positions) setState(s PositionsStatus) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	// A reset stays visible: the positions it lost are not coming back.
	if ps.state.Reason == PositionsReset && s.Reason == PositionsStored {
		s.Reason, s.Message = PositionsReset, ps.state.Message
	}
	ps.state = s
}

func (ps *positions) status() PositionsStatus {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.state
}

// PipelineRef identifies the pipeline a positions object belongs to.
type PipelineRef struct {
	Namespace string
	Name      string
	UID       string
}

// PositionStore keeps pipelines' positions in the cluster. Load returns nil
// data when nothing is stored, an error wrapping ErrForeignPositions when
// the object is not the operator's, and any other error when it cannot be
// read. Save writes data, creating the object when needed.
type PositionStore interface {
	Load(ctx context.Context, ref PipelineRef) ([]byte, error)
	Save(ctx context.Context, ref PipelineRef, data []byte, containers int) error
}

// positionForgetter is a PositionStore that keeps something per pipeline in
// memory, to be dropped when the pipeline's workers are removed.
type positionForgetter interface {
	Forget(ref PipelineRef)
}

// ErrForeignPositions means the positions object exists but was not written
// by the operator for this pipeline.
var ErrForeignPositions = errors.New("the positions object was not written by log-capturer for this pipeline")

// load reads the pipeline's positions from the store once.
func (p *pipeline) loadPositions(ctx context.Context) {
	ps := p.positions
	ps.mu.Lock()
	loaded := ps.loaded
	ps.mu.Unlock()
	if loaded {
		return
	}
	store := p.mgr.opts.Positions
	var (
		data   []byte
		stored []storedPosition
		err    error
	)
	if store != nil {
		data, err = store.Load(ctx, p.ref())
		if err == nil && data != nil {
			stored, err = decodePositions(data)
		}
	}
	switch {
	case store == nil:
		ps.setState(PositionsStatus{Reason: PositionsInMemory, Message: "This runtime keeps positions in memory only."})
	case errors.Is(err, ErrForeignPositions):
		ps.setState(PositionsStatus{Reason: PositionsForeign, Message: fmt.Sprintf(
			"%s; it is left alone, containers started from startAt and positions are kept in memory only until it is removed.", err)})
	case err != nil && ctx.Err() != nil:
		return // stopping; the next start loads
	case err != nil:
		ps.setState(PositionsStatus{Reason: PositionsReset, Message: fmt.Sprintf(
			"The stored positions could not be read (%s); containers started from startAt and positions are stored anew.", err)})
	case data != nil:
		ps.restore(stored)
		p.log.Info("resuming from stored positions", "containers", len(stored))
		ps.setState(PositionsStatus{Reason: PositionsStored, Containers: len(stored), Bytes: len(data),
			Message: fmt.Sprintf("Resumed %d containers from stored positions.", len(stored))})
	default:
		ps.setState(PositionsStatus{Reason: PositionsStored, Message: "No positions were stored yet."})
	}
	ps.mu.Lock()
	ps.loaded = true
	ps.dirty = true
	ps.mu.Unlock()
}

func (p *pipeline) ref() PipelineRef {
	return PipelineRef{Namespace: p.cfg.Namespace, Name: p.cfg.Name, UID: p.cfg.UID}
}

// writePositions writes the positions every PositionsInterval while they
// change, and once more after the sinks were drained on a clean stop.
func (p *pipeline) writePositions(ctx context.Context) {
	t := time.NewTicker(cmpOr(p.cfg.PositionsInterval, 5*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			<-p.fanoutDone // the sinks acknowledged what they could
			if p.crashed.Load() {
				return
			}
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.mgr.opts.DrainTimeout)
			defer cancel()
			p.flushPositions(wctx)
			return
		case <-t.C:
			p.flushPositions(ctx)
		}
	}
}

// flushPositions writes the positions when they changed.
func (p *pipeline) flushPositions(ctx context.Context) {
	ps := p.positions
	store := p.mgr.opts.Positions
	ps.mu.Lock()
	loaded := ps.loaded
	ps.mu.Unlock()
	if store == nil || !loaded {
		return
	}
	now := time.Now()
	stored, changed := ps.snapshot(now, cmpOr(p.cfg.PositionsRetention, time.Hour))
	if !changed {
		return
	}
	data, err := encodePositions(stored)
	if err == nil {
		err = store.Save(ctx, p.ref(), data, len(stored))
	}
	if err != nil {
		ps.markDirty() // written at the next chance
	}
	st := ps.status()
	switch {
	case errors.Is(err, ErrForeignPositions):
		st.Reason = PositionsForeign
		st.Message = fmt.Sprintf("%s; it is left alone and positions are kept in memory only until it is removed.", err)
	case err != nil:
		if ctx.Err() != nil {
			return
		}
		st.Reason = PositionsWriteFailed
		st.Message = fmt.Sprintf("Writing the positions of %d containers failed: %s.", len(stored), err)
		p.m.positionErrors.Inc()
	default:
		p.m.positionWrites.Inc()
		p.m.positionBytes.Set(float64(len(data)))
		st = PositionsStatus{Reason: PositionsStored, Containers: len(stored), Bytes: len(data), LastWrite: now,
			Message: fmt.Sprintf("Positions of %d containers stored (%d bytes compressed).", len(stored), len(data))}
	}
	ps.setState(st)
}
