package workers

import (
	"context"
	"sync"
	"time"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/crifile"
)

// healthSample is one reading of a pipeline's numbers.
type healthSample struct {
	at         time.Time
	goroutines int // the pipeline's own
	fds        int
	active     int
	lines      int64
	gaps       int64
	opens      int64
	openWait   time.Duration
	sinks      []capture.SinkStats
}

// sampler keeps a pipeline's samples for one window.
type sampler struct {
	mu      sync.Mutex
	span    time.Duration
	samples []healthSample
}

func (s *sampler) add(h healthSample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples = append(s.samples, h)
	cut := 0
	for cut < len(s.samples)-2 && h.at.Sub(s.samples[cut].at) > s.span {
		cut++
	}
	if cut > 0 {
		n := copy(s.samples, s.samples[cut:])
		clear(s.samples[n:])
		s.samples = s.samples[:n]
	}
}

// window computes the window's slopes and deltas.
func (s *sampler) window() capture.Window {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := capture.Window{Samples: len(s.samples)}
	if len(s.samples) == 0 {
		return h
	}
	first, last := s.samples[0], s.samples[len(s.samples)-1]
	h.Covered = last.at.Sub(first.at)
	own := make([]Sample, len(s.samples))
	fds := make([]Sample, len(s.samples))
	for i, x := range s.samples {
		own[i] = Sample{At: x.at, Value: float64(x.goroutines - x.active)}
		fds[i] = Sample{At: x.at, Value: float64(x.fds)}
	}
	h.GoroutineGrowthPerMinute, _ = SlopePerMinute(own)
	fdPerMin, _ := SlopePerMinute(fds)
	h.FDGrowthPer10Minutes = 10 * fdPerMin
	h.LinesInWindow = last.lines - first.lines
	h.OpensInWindow = last.opens - first.opens
	h.OpenWaitInWindow = last.openWait - first.openWait
	h.GapsInWindow = last.gaps - first.gaps
	if len(s.samples) == 1 {
		h.GapsInWindow = last.gaps
	}
	if secs := h.Covered.Seconds(); secs > 0 {
		h.LinesPerSecond = float64(h.LinesInWindow) / secs
	}
	for i, sk := range last.sinks {
		w := capture.SinkWindow{Name: sk.Name, Sent: sk.SentLines, Dropped: sk.DroppedLines, Rejected: sk.RejectedLines}
		if i < len(first.sinks) {
			w.Sent -= first.sinks[i].SentLines
			w.Dropped -= first.sinks[i].DroppedLines
			w.Rejected -= first.sinks[i].RejectedLines
		}
		h.Sinks = append(h.Sinks, w)
	}
	return h
}

// sample runs in the pipeline's group and reads its numbers every period.
func (p *pipeline) sample(ctx context.Context) {
	t := time.NewTicker(p.deps.samplePeriod)
	defer t.Stop()
	for {
		if p.deps.files != nil {
			p.stats.unreadBytes.Store(p.unread())
		}
		s := p.counts()
		p.sampler.add(healthSample{at: time.Now(), goroutines: s.Goroutines, fds: OpenFDs(),
			active: s.ActiveStreams, lines: s.LinesTotal, gaps: s.Gaps, opens: s.Opens, openWait: s.OpenWait, sinks: s.Sinks})
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// unread sums, over the selected containers read from the kubelet's files,
// the bytes of their logs after the positions the sinks acknowledged: a
// few stats per container, on the sample period.
func (p *pipeline) unread() int64 {
	var n int64
	for _, fp := range p.tracker.filePositions() {
		dir, err := p.deps.files.logDir(p.cfg.Namespace, fp.pod, fp.key)
		if err != nil {
			continue
		}
		if u, err := crifile.Unread(dir, fp.pos.Log, fp.pos.File); err == nil {
			n += u
		}
	}
	return n
}
