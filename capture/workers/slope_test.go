package workers

import (
	"math"
	"testing"
	"time"
)

func TestSlopePerMinute(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	line := func(perMin float64, n int, noise []float64) []Sample {
		out := make([]Sample, n)
		for i := range out {
			v := perMin * float64(i) / 4 // one sample every 15 s
			if noise != nil {
				v += noise[i%len(noise)]
			}
			out[i] = Sample{At: t0.Add(time.Duration(i) * 15 * time.Second), Value: v}
		}
		return out
	}
	tests := []struct {
		name    string
		samples []Sample
		want    float64
		ok      bool
	}{
		{"empty", nil, 0, false},
		{"one", line(1, 1, nil), 0, false},
		{"flat", line(0, 40, nil), 0, true},
		{"34 per minute", line(34, 40, nil), 34, true},
		{"3 per minute with noise", line(3, 40, []float64{2, -2, 1, -1}), 3, true},
		{"shrinking", line(-5, 10, nil), -5, true},
		{"same instant", []Sample{{At: t0, Value: 1}, {At: t0, Value: 2}}, 0, false},
	}
	for _, tc := range tests {
		got, ok := SlopePerMinute(tc.samples)
		if ok != tc.ok || math.Abs(got-tc.want) > 0.05 {
			t.Errorf("%s: SlopePerMinute = %.3f, %v; want %.3f, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
