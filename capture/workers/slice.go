package workers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/log-capturer/log-capturer/capture"
)

// readerPool reuses the line readers of stream slices.
var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// classify tells why a stream ended from its contexts and error: ctx is the
// slice's, rctx the slice's bounded by its rotation interval.
func classify(ctx, rctx context.Context, err error) (outcome, error) {
	switch {
	case ctx.Err() != nil:
		return outcomeStopped, nil
	case rctx.Err() != nil:
		return outcomeRotated, nil
	case errors.Is(err, capture.ErrLogNotFound):
		return outcomeNotFound, err
	}
	return outcomeFailed, err
}

// runSlice follows one container's log for one rotation interval: it waits
// for its turn to open (the process-wide open rate), then, for one rotation
// interval, opens the stream at the container's position and hands every new
// complete line to the pipeline; it closes the stream before it returns.
// The interval counts from the turn, never from before, so that waiting for
// it is neither a rotation nor an error; it includes the open, because the
// kubelet answers a follow of an idle container only with its first line.
// runSlice runs in exactly one goroutine, which is the only reader and the
// only closer of the stream.
func (p *pipeline) runSlice(ctx context.Context, c *container) sliceResult {
	if c.file {
		return p.runFileSlice(ctx, c)
	}
	res := sliceResult{key: c.key, pos: c.pos, dupUntil: c.dupUntil}
	if err := p.waitToOpen(ctx, c.namespace); err != nil {
		res.outcome = outcomeStopped
		return res
	}
	rctx, cancel := context.WithTimeout(ctx, p.cfg.RotationInterval)
	defer cancel()
	body, err := p.deps.source.OpenLog(rctx, capture.LogRequest{Namespace: c.namespace, Pod: c.pod,
		Container: c.name, Since: c.pos.Since, Follow: true})
	if err != nil {
		res.outcome, res.err = classify(ctx, rctx, err)
		return res
	}
	p.stats.openStreams.Add(1)
	err = p.read(ctx, body, c, &res, true)
	closeErr := body.Close()
	p.stats.openStreams.Add(-1)
	if errors.Is(err, errLogReplaced) {
		return p.readPrevious(ctx, rctx, c, res)
	}
	if err == nil && closeErr != nil && rctx.Err() == nil {
		err = fmt.Errorf("closing log stream: %w", closeErr)
	}
	if err == nil && rctx.Err() == nil {
		res.outcome = outcomeEnded
		return res
	}
	res.outcome, res.err = classify(ctx, rctx, err)
	return res
}

// errLogReplaced ends a stream whose lines are not the log the position counted.
var errLogReplaced = errors.New("the container's log was replaced")

// readPrevious runs when the followed log is not the one the position
// counted, because the container restarted while no stream was open: it reads
// what the previous instance wrote after the position, then lets the next
// slice follow the new instance from its start. The slice's rotation still
// bounds it.
func (p *pipeline) readPrevious(ctx, rctx context.Context, c *container, res sliceResult) sliceResult {
	body, err := p.deps.source.OpenLog(rctx, capture.LogRequest{Namespace: c.namespace, Pod: c.pod,
		Container: c.name, Since: res.pos.Since, Previous: true})
	counted, lastBefore, countBefore := false, res.pos.Last, res.pos.Count
	if err == nil {
		p.stats.openStreams.Add(1)
		counted, err = p.readCounted(ctx, body, c, &res)
		_ = body.Close()
		p.stats.openStreams.Add(-1)
	}
	if ctx.Err() != nil || rctx.Err() != nil {
		res.outcome, res.err = classify(ctx, rctx, err)
		return res
	}
	// Neither log holds the counted lines: what followed them is gone
	// (the kubelet rotated it away, or the container restarted again).
	if countBefore > 0 && !counted {
		res.gap, res.gapFrom = true, lastBefore
	}
	// With or without a previous instance (the kubelet answers 400 when there
	// is none), the current log starts after everything counted.
	res.pos.Count, res.pos.First = 0, time.Time{}
	res.outcome = outcomeReplaced
	return res
}

// readCounted reads a previous log and tells whether it held the lines the
// position counted.
func (p *pipeline) readCounted(ctx context.Context, body io.Reader, c *container, res *sliceResult) (bool, error) {
	var skip resumer
	err := p.readWith(ctx, body, c, res, false, &skip)
	return skip.checked && !skip.replaced && !skip.gap, err
}

// read consumes the stream until it ends. A line counts only with its
// newline: a fragment at the end of a cut stream is dropped and read again,
// whole, after the resume. Records are sent with the slice's context, not
// the rotation deadline, so a full pipeline holds the stream (backpressure)
// instead of reopening it.
//
// When stopOnReplaced is set and the stream is not the counted log, read
// returns errLogReplaced before delivering anything of it.
func (p *pipeline) read(ctx context.Context, body io.Reader, c *container, res *sliceResult, stopOnReplaced bool) error {
	var skip resumer
	return p.readWith(ctx, body, c, res, stopOnReplaced, &skip)
}

// readWith is read with the resumer it uses, so that the caller can see
// whether the counted lines were found.
func (p *pipeline) readWith(ctx context.Context, body io.Reader, c *container, res *sliceResult, stopOnReplaced bool, skip *resumer) error {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(body)
	defer func() {
		br.Reset(nil)
		readerPool.Put(br)
	}()
	*skip = newResumer(res.pos)
	maxText := p.maxLineBytes()
	var (
		long []byte
		// over counts the bytes of the current line beyond what long keeps.
		over int
		last = res.pos.Last
	)
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long, over = appendCapped(long, chunk, maxText+maxPrefix, over)
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err //nolint:wrapcheck // classified by the caller
		}
		line := chunk[:len(chunk)-1]
		if len(long) > 0 || over > 0 {
			long, over = appendCapped(long, chunk, maxText+maxPrefix, over)
			line = long
			if over == 0 {
				line = long[:len(long)-1]
			}
		}
		ts, text, ok := splitTimestamp(line)
		if !ok {
			ts = last // a line without timestamp belongs with the one before
		}
		last = ts
		if skip.delivered(ts) {
			long, over = long[:0], 0
			continue
		}
		if skip.gap && !res.gap {
			res.gap, res.gapFrom, res.replacedAt = true, res.pos.Last, ts
		}
		if skip.replaced && stopOnReplaced {
			res.replacedAt = ts
			return errLogReplaced
		}
		next := res.pos
		next.deliver(ts)
		str := ""
		if over > 0 || len(text) > maxText {
			str = cutLine(text, maxText)
			p.stats.truncatedLines.Add(1)
		} else {
			str = string(text)
		}
		r := &tracked{Record: capture.Record{Time: ts, Line: str, Namespace: c.namespace, Pod: c.pod,
			Container: c.name, Node: c.node, Labels: c.labels}, key: c.key, pos: next}
		if err := p.handOver(ctx, r, res, len(text)); err != nil {
			return err
		}
		long, over = long[:0], 0
	}
}

// handOver hands r to the fan-out within the pipeline's hand-off bound,
// then moves the slice's position to r's and counts it: a line, textBytes
// bytes as read (before any cut), a resume duplicate while the position is
// short of dupUntil. When ctx ends first, nothing is handed over or counted.
func (p *pipeline) handOver(ctx context.Context, r *tracked, res *sliceResult, textBytes int) error {
	r.Acker = r
	if err := p.handoff.Acquire(ctx, handoffWeight(r)); err != nil {
		return err //nolint:wrapcheck // classified by the caller
	}
	select {
	case p.records <- r:
	case <-ctx.Done():
		p.handoff.Release(handoffWeight(r))
		return ctx.Err() //nolint:wrapcheck // classified by the caller
	}
	res.pos = r.pos
	if !res.dupUntil.isZero() {
		if res.dupUntil.beyond(r.pos) {
			p.stats.resumeDuplicates.Add(1)
		} else {
			res.dupUntil = Position{}
		}
	}
	res.lines++
	p.stats.lines.Add(1)
	p.stats.bytes.Add(int64(textBytes))
	return nil
}

// defaultMaxLine is the line cap when the pipeline sets none.
const defaultMaxLine = 1 << 20

// maxPrefix is room for the timestamp and its space before a line's text.
const maxPrefix = 64

func (p *pipeline) maxLineBytes() int {
	if p.cfg.MaxLineBytes > 0 {
		return p.cfg.MaxLineBytes
	}
	return defaultMaxLine
}

// appendCapped appends chunk to long up to limit bytes and counts the rest
// in over, so that an endless line costs at most limit bytes of memory.
func appendCapped(long, chunk []byte, limit, over int) ([]byte, int) {
	room := max(0, limit-len(long))
	if len(chunk) <= room {
		return append(long, chunk...), over
	}
	return append(long, chunk[:room]...), over + len(chunk) - room
}

// cutLine returns the first max bytes of text, cut at a character boundary
// when the text is UTF-8 there, with the marker.
func cutLine(text []byte, maxBytes int) string {
	cut := min(maxBytes, len(text))
	for i := 0; i < utf8.UTFMax && cut-i > 0 && cut < len(text); i++ {
		if utf8.RuneStart(text[cut-i]) {
			cut -= i
			break
		}
	}
	return string(text[:cut]) + capture.TruncatedMarker
}
