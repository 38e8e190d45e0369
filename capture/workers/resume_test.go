package workers

import (
	"testing"
	"time"
)

func TestSplitTimestamp(t *testing.T) {
	tests := []struct {
		in   string
		ok   bool
		ts   string
		rest string
	}{
		{"2026-11-27T07:35:01.123456789Z hello world", true, "2026-11-27T07:35:01.123456789Z", "hello world"},
		{"2026-11-27T07:35:01Z ", true, "2026-11-27T07:35:01Z", ""},
		{"2026-11-27T07:35:01+01:00 x", true, "2026-11-27T06:35:01Z", "x"},
		{"no timestamp here", false, "", "no timestamp here"},
		{"", false, "", ""},
		{" leading space", false, "", " leading space"},
		{"2026-11-27T07:35:01.5Z \xff\xfe invalid utf8", true, "2026-11-27T07:35:01.5Z", "\xff\xfe invalid utf8"},
	}
	for _, tc := range tests {
		ts, rest, ok := splitTimestamp([]byte(tc.in))
		if ok != tc.ok || string(rest) != tc.rest {
			t.Errorf("splitTimestamp(%q) = %v, %q, %v", tc.in, ts, rest, ok)
			continue
		}
		if ok {
			want, _ := time.Parse(time.RFC3339Nano, tc.ts)
			if !ts.Equal(want) {
				t.Errorf("splitTimestamp(%q) time = %v, want %v", tc.in, ts, want)
			}
		}
	}
}

// TestResumeIsExact replays streams the way the kubelet serves them after
// sinceTime and checks that exactly the undelivered suffix is delivered.
func TestResumeIsExact(t *testing.T) {
	base := time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	tests := []struct {
		name string
		log  []time.Time // the container's whole log, in file order
	}{
		{"distinct", []time.Time{at(0), at(100), at(1100), at(2500), at(2600)}},
		{"many equal timestamps", []time.Time{at(5), at(5), at(5), at(5), at(900), at(900), at(1000), at(1000), at(1000)}},
		{"out of order within a second", []time.Time{at(500), at(300), at(900), at(100), at(1200), at(1100), at(1150)}},
		{"out of order across seconds", []time.Time{at(1900), at(2100), at(1950), at(2050), at(3000)}},
	}
	for _, tc := range tests {
		// Cut after every prefix length and resume: the union must be the log once.
		for cut := 0; cut <= len(tc.log); cut++ {
			var pos Position
			var got []int
			for i := range cut {
				pos.deliver(tc.log[i])
				got = append(got, i)
			}
			r := newResumer(pos)
			for i, ts := range tc.log {
				if !pos.Since.IsZero() && ts.Before(pos.Since) {
					continue // the kubelet filters by sinceTime
				}
				if r.delivered(ts) {
					continue
				}
				got = append(got, i)
			}
			lost, dup := diff(len(tc.log), got)
			// Lines older than sinceTime that come after the cut cannot be
			// recovered through the API; they are the only allowed loss.
			for _, i := range lost {
				if i < cut || !tc.log[i].Before(pos.Since) {
					t.Errorf("%s, cut %d: line %d lost", tc.name, cut, i)
				}
			}
			if len(dup) > 0 {
				t.Errorf("%s, cut %d: lines %v duplicated", tc.name, cut, dup)
			}
		}
	}
}

func diff(n int, got []int) (lost, dup []int) {
	seen := make([]int, n)
	for _, i := range got {
		seen[i]++
	}
	for i, c := range seen {
		if c == 0 {
			lost = append(lost, i)
		}
		if c > 1 {
			dup = append(dup, i)
		}
	}
	return lost, dup
}

// TestResumeDetectsAReplacedLog checks that a reopened stream that is not the
// counted log (a restarted container) skips nothing and says so.
func TestResumeDetectsAReplacedLog(t *testing.T) {
	base := time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		pos  Position
	}{
		{"counted from a new second", func() Position {
			var p Position
			p.deliver(base.Add(100 * time.Millisecond))
			p.deliver(base.Add(200 * time.Millisecond))
			return p
		}()},
		{"counted from zero within a second (Now, or after a restart)", func() Position {
			p := Position{Since: base}
			p.deliver(base.Add(300 * time.Millisecond))
			return p
		}()},
	}
	for _, tc := range tests {
		if tc.pos.First.IsZero() {
			t.Fatalf("%s: First not recorded", tc.name)
		}
		// A new instance writes after the old one's last line.
		r := newResumer(tc.pos)
		if r.delivered(tc.pos.Last.Add(50 * time.Millisecond)) {
			t.Errorf("%s: a line of another log was skipped", tc.name)
		}
		if !r.replaced {
			t.Errorf("%s: the replaced log was not detected", tc.name)
		}
		same := newResumer(tc.pos)
		if !same.delivered(tc.pos.First) || same.replaced {
			t.Errorf("%s: the counted log was not recognised", tc.name)
		}
	}
}

// TestResumeSkipsThroughWhenTheKubeletRotatedTheCountedLines checks a reopen
// after the kubelet rotated the first counted lines of the second away: the
// log starts inside the counted lines and the resume skips through the last
// delivered line, or says that the last delivered line is gone too.
func TestResumeSkipsThroughWhenTheKubeletRotatedTheCountedLines(t *testing.T) {
	base := time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)
	ts := []time.Time{base.Add(100 * time.Millisecond), base.Add(200 * time.Millisecond), base.Add(200 * time.Millisecond),
		base.Add(300 * time.Millisecond), base.Add(300 * time.Millisecond), base.Add(400 * time.Millisecond)}
	var pos Position
	for _, t := range ts[:5] { // delivered: up to the second line at 300ms
		pos.deliver(t)
	}
	if pos.LastRun != 2 || !pos.Last.Equal(ts[4]) {
		t.Fatalf("position %+v: want the last two lines sharing 300ms", pos)
	}
	for _, tc := range []struct {
		name      string
		rotated   int // lines the kubelet rotated away
		delivered []bool
		gap       bool
	}{
		{"first line rotated away", 1, []bool{true, true, true, true, false}, false},
		{"all but the last run rotated away", 3, []bool{true, true, false}, false},
		{"everything delivered rotated away", 5, []bool{false}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newResumer(pos)
			for i, want := range tc.delivered {
				if got := r.delivered(ts[tc.rotated+i]); got != want {
					t.Fatalf("line %d: delivered=%v, want %v", tc.rotated+i, got, want)
				}
			}
			// Without the last delivered line the log cannot be told from a
			// new instance's: the slice then reads previous=true, and a
			// missing previous log is counted as a gap.
			if r.replaced != tc.gap {
				t.Fatalf("replaced=%v, want %v", r.replaced, tc.gap)
			}
		})
	}
}
