package runtime

import (
	"context"
	goruntime "runtime"
	"sync"
	"time"
)

// goroutinesPerStream is what an open stream costs the process: its reader
// and the HTTP/2 transport's goroutine for the request (FIELD-NOTES).
const goroutinesPerStream = 2

// healthSample is one reading of a pipeline's numbers.
type healthSample struct {
	at                time.Time
	goroutines        int // the pipeline's own
	processGoroutines int
	fds               int
	active            int
	lines             int64
	gaps              int64
	sinks             []SinkStats
}

// Health is what the sampler measured over the pipeline's health window.
// Growth numbers are least-squares slopes; "unexplained" goroutines are
// those not accounted for by open streams, so that more pods is not a leak.
type Health struct {
	// Samples is how many samples the window holds; Covered how much time they span.
	Samples int
	Covered time.Duration
	// GoroutineGrowthPerMinute is the slope of the pipeline's goroutines
	// minus one per active stream.
	GoroutineGrowthPerMinute float64
	// ProcessGoroutineGrowthPerMinute is the slope of the process's
	// goroutines minus goroutinesPerStream per active stream of this pipeline.
	ProcessGoroutineGrowthPerMinute float64
	// FDGrowthPer10Minutes is the slope of the process's open FDs.
	FDGrowthPer10Minutes float64
	// LinesInWindow and LinesPerSecond describe what was read in the window.
	LinesInWindow  int64
	LinesPerSecond float64
	// GapsInWindow counts stretches of log found gone when capture resumed.
	GapsInWindow int64
	// Sinks holds each sink's sent and dropped lines in the window.
	Sinks []SinkWindow
}

// SinkWindow is one sink's deliveries within the health window.
type SinkWindow struct {
	Name    string
	Sent    int64
	Dropped int64
}

// sampler keeps a pipeline's samples for one window.
type sampler struct {
	mu      sync.Mutex
	window  time.Duration
	samples []healthSample
}

func (s *sampler) add(h healthSample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples = append(s.samples, h)
	cut := 0
	for cut < len(s.samples)-2 && h.at.Sub(s.samples[cut].at) > s.window {
		cut++
	}
	if cut > 0 {
		n := copy(s.samples, s.samples[cut:])
		clear(s.samples[n:])
		s.samples = s.samples[:n]
	}
}

// health computes the window's slopes and deltas.
func (s *sampler) health() Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := Health{Samples: len(s.samples)}
	if len(s.samples) == 0 {
		return h
	}
	first, last := s.samples[0], s.samples[len(s.samples)-1]
	h.Covered = last.at.Sub(first.at)
	own := make([]Sample, len(s.samples))
	proc := make([]Sample, len(s.samples))
	fds := make([]Sample, len(s.samples))
	for i, x := range s.samples {
		own[i] = Sample{At: x.at, Value: float64(x.goroutines - x.active)}
		proc[i] = Sample{At: x.at, Value: float64(x.processGoroutines - goroutinesPerStream*x.active)}
		fds[i] = Sample{At: x.at, Value: float64(x.fds)}
	}
	h.GoroutineGrowthPerMinute, _ = SlopePerMinute(own)
	h.ProcessGoroutineGrowthPerMinute, _ = SlopePerMinute(proc)
	fdPerMin, _ := SlopePerMinute(fds)
	h.FDGrowthPer10Minutes = 10 * fdPerMin
	h.LinesInWindow = last.lines - first.lines
	h.GapsInWindow = last.gaps - first.gaps
	if len(s.samples) == 1 {
		h.GapsInWindow = last.gaps
	}
	if secs := h.Covered.Seconds(); secs > 0 {
		h.LinesPerSecond = float64(h.LinesInWindow) / secs
	}
	for i, sk := range last.sinks {
		w := SinkWindow{Name: sk.Name, Sent: sk.SentLines, Dropped: sk.DroppedLines}
		if i < len(first.sinks) {
			w.Sent -= first.sinks[i].SentLines
			w.Dropped -= first.sinks[i].DroppedLines
		}
		h.Sinks = append(h.Sinks, w)
	}
	return h
}

// sample runs in the pipeline's group and reads its numbers every period.
func (p *pipeline) sample(ctx context.Context) {
	period := p.mgr.opts.SamplePeriod
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		s := p.snapshot()
		p.health.add(healthSample{at: time.Now(), goroutines: s.Goroutines, processGoroutines: goruntime.NumGoroutine(),
			fds: OpenFDs(), active: s.ActiveStreams, lines: s.LinesTotal, gaps: s.Gaps, sinks: s.Sinks})
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// LeakGoroutinesForTest makes a pipeline's workers leak perMinute goroutines
// a minute, owned and counted like real ones and ended with the pipeline. It
// exists to prove that the health conditions catch a leak; nothing in the
// operator calls it.
func (m *Manager) LeakGoroutinesForTest(key string, perMinute int) bool {
	m.mu.Lock()
	var p *pipeline
	for k, e := range m.pipelines {
		if k.String() == key {
			p = e.p
		}
	}
	m.mu.Unlock()
	if p == nil || p.g == nil || perMinute <= 0 {
		return false
	}
	p.g.Go(func(ctx context.Context) {
		t := time.NewTicker(time.Minute / time.Duration(perMinute))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				p.g.Go(func(ctx context.Context) { <-ctx.Done() })
			}
		}
	})
	return true
}
