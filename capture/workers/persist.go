package workers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/log-capturer/log-capturer/capture"
)

// loadPositions reads the pipeline's positions from the store once.
func (p *pipeline) loadPositions(ctx context.Context) {
	ps := p.tracker
	ps.mu.Lock()
	loaded := ps.loaded
	ps.mu.Unlock()
	if loaded {
		return
	}
	store := p.deps.store
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
		ps.setState(capture.PositionsStatus{Reason: capture.PositionsInMemory, Message: "These workers keep positions in memory only."})
	case errors.Is(err, capture.ErrForeignPositions):
		ps.setState(capture.PositionsStatus{Reason: capture.PositionsForeign, Message: fmt.Sprintf(
			"%s; it is left alone, containers started from startAt and positions are kept in memory only until it is removed.", err)})
	case err != nil && ctx.Err() != nil:
		return // stopping; the next start loads
	case err != nil:
		ps.setState(capture.PositionsStatus{Reason: capture.PositionsReset, Message: fmt.Sprintf(
			"The stored positions could not be read (%s); containers started from startAt and positions are stored anew.", err)})
	case data != nil:
		ps.restore(stored)
		p.log.Info("resuming from stored positions", "containers", len(stored))
		ps.setState(capture.PositionsStatus{Reason: capture.PositionsStored, Containers: len(stored), Bytes: len(data),
			Message: fmt.Sprintf("Resumed %d containers from stored positions.", len(stored))})
	default:
		ps.setState(capture.PositionsStatus{Reason: capture.PositionsStored, Message: "No positions were stored yet."})
	}
	ps.mu.Lock()
	ps.loaded = true
	ps.dirty = true
	ps.mu.Unlock()
}

func (p *pipeline) ref() capture.PipelineRef {
	return capture.PipelineRef{Namespace: p.cfg.Namespace, Name: p.cfg.Name, UID: p.cfg.UID}
}

// writePositions writes the positions every PositionsInterval while they
// change, and once more after the sinks were drained on a clean stop.
func (p *pipeline) writePositions(ctx context.Context) {
	t := time.NewTicker(durationOr(p.cfg.PositionsInterval, 5*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			<-p.fanoutDone // the sinks acknowledged what they could
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.deps.drainTimeout)
			defer cancel()
			p.flushPositions(wctx, false) // the last write waits for no turn
			return
		case <-t.C:
			p.flushPositions(ctx, true)
		}
	}
}

// flushPositions writes the positions when they changed; paced, it first
// waits for the namespace's turn under the process-wide write rate.
func (p *pipeline) flushPositions(ctx context.Context, paced bool) {
	ps := p.tracker
	store := p.deps.store
	ps.mu.Lock()
	loaded, dirty := ps.loaded, ps.dirty
	ps.mu.Unlock()
	if store == nil || !loaded || !dirty {
		return
	}
	if paced && p.deps.writes.wait(ctx, p.cfg.Namespace) != nil {
		return
	}
	ps.writeMu.Lock()
	now := time.Now()
	stored, changed := ps.changes(now, durationOr(p.cfg.PositionsRetention, time.Hour))
	if !changed {
		ps.writeMu.Unlock()
		return
	}
	data, err := encodePositions(stored)
	if err == nil {
		err = store.Save(ctx, p.ref(), data, len(stored))
	}
	ps.writeMu.Unlock()
	if err != nil {
		ps.markDirty() // written at the next chance
	}
	st := ps.status()
	switch {
	case errors.Is(err, capture.ErrForeignPositions):
		st.Reason = capture.PositionsForeign
		st.Message = fmt.Sprintf("%s; it is left alone and positions are kept in memory only until it is removed.", err)
	case err != nil:
		if ctx.Err() != nil {
			return
		}
		st.Reason = capture.PositionsWriteFailed
		st.Message = fmt.Sprintf("Writing the positions of %d containers failed: %s.", len(stored), err)
		p.stats.positionErrors.Add(1)
	default:
		p.stats.positionWrites.Add(1)
		p.stats.positionBytes.Store(int64(len(data)))
		st = capture.PositionsStatus{Reason: capture.PositionsStored, Containers: len(stored), Bytes: len(data), LastWrite: now,
			Message: fmt.Sprintf("Positions of %d containers stored (%d bytes compressed).", len(stored), len(data))}
	}
	ps.setState(st)
}

// stagePositions writes the positions with the store's Stage before a sink
// sends lines that moved a sent position, so that a restart after the
// process was killed counts exactly the lines it sends again that may have
// arrived. A failed stage is counted; the next save reports the store.
func (p *pipeline) stagePositions(stager capture.PositionStager) {
	ps := p.tracker
	ps.mu.Lock()
	loaded := ps.loaded
	ps.mu.Unlock()
	if !loaded {
		return
	}
	ps.writeMu.Lock()
	defer ps.writeMu.Unlock()
	stored := ps.snapshot(time.Now(), durationOr(p.cfg.PositionsRetention, time.Hour))
	data, err := encodePositionsFast(stored)
	if err == nil {
		err = stager.Stage(context.Background(), p.ref(), data, len(stored))
	}
	if err != nil {
		p.stats.positionErrors.Add(1)
		return
	}
	p.stats.positionStages.Add(1)
}
