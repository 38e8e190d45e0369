package workers

import "time"

// Sample is one measurement at a point in time.
type Sample struct {
	At    time.Time
	Value float64
}

// SlopePerMinute returns the least-squares slope of the samples, in units per
// minute, and false when fewer than two distinct times were sampled.
func SlopePerMinute(samples []Sample) (float64, bool) {
	if len(samples) < 2 {
		return 0, false
	}
	t0 := samples[0].At
	var n, sx, sy, sxx, sxy float64
	for _, s := range samples {
		x := s.At.Sub(t0).Minutes()
		n++
		sx += x
		sy += s.Value
		sxx += x * x
		sxy += x * s.Value
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0, false
	}
	return (n*sxy - sx*sy) / den, true
}
