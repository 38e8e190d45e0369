package crifile

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/log-capturer/log-capturer/capture"
)

func TestParseTime(t *testing.T) {
	for _, s := range []string{
		"2026-12-02T03:46:16Z",
		"2026-12-02T03:46:16.1Z",
		"2026-12-02T03:46:16.123456789Z",
		"2026-12-02T03:46:16.000000001+02:00",
		"2026-12-02T03:46:16.5-07:30",
		"2024-02-29T23:59:59.999999999Z",
	} {
		want, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := parseTime([]byte(s))
		if !ok || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("%s: got %v %v, want %v in UTC", s, got, ok, want)
		}
	}
	for _, s := range []string{
		"", "2026-12-02", "2026-12-02T03:46:16", "2026-13-02T03:46:16Z", "2026-02-30T03:46:16Z",
		"2026-12-02T03:46:16.Z", "2026-12-02T03:46:16.1234567891Z", "2026-12-02T03:46:16+2:00", "2026-12-02 03:46:16Z",
		"2026-12-02T03:46:16.5X", "x026-12-02T03:46:16Z",
	} {
		if _, ok := parseTime([]byte(s)); ok {
			t.Errorf("%q parsed", s)
		}
	}
	if n := testing.AllocsPerRun(100, func() { parseTime([]byte("2026-12-02T03:46:16.123456789+02:00")) }); n != 0 {
		t.Errorf("parseTime allocates %v times", n)
	}
}

// TestMerger: P chunks merge with their F byte for byte, per stream (the
// runtime interleaves the streams' chunks); whitespace, empty messages and
// invalid UTF-8 pass through; tags after ':' are ignored; what is not a
// CRI line is refused without disturbing a record being merged; a record
// over the cap is cut at a character boundary and marked.
func TestMerger(t *testing.T) {
	const ts = "2026-12-02T03:46:16.123456789Z"
	type out struct {
		stream Stream
		line   string
		cut    int
	}
	tests := []struct {
		name  string
		max   int
		lines []string
		want  []out
		bad   int
	}{
		{"full lines", 0, []string{ts + " stdout F hello", ts + " stderr F oops"}, []out{{Stdout, "hello", 0}, {Stderr, "oops", 0}}, 0},
		{"partials merge", 0, []string{ts + " stdout P aaa", ts + " stdout P bbb", ts + " stdout F ccc"}, []out{{Stdout, "aaabbbccc", 0}}, 0},
		{"streams interleave", 0, []string{ts + " stdout P out-1 ", ts + " stderr P err-1 ", ts + " stderr F err-2", ts + " stdout F out-2"},
			[]out{{Stderr, "err-1 err-2", 0}, {Stdout, "out-1 out-2", 0}}, 0},
		{"whitespace kept", 0, []string{ts + " stdout F   padded  \t ", ts + " stdout P  ", ts + " stdout F  "}, []out{{Stdout, "  padded  \t ", 0}, {Stdout, "  ", 0}}, 0},
		{"empty message", 0, []string{ts + " stdout F ", ts + " stdout F"}, []out{{Stdout, "", 0}, {Stdout, "", 0}}, 0},
		{"invalid UTF-8", 0, []string{ts + " stdout F \xff\xfe\x00x"}, []out{{Stdout, "\xff\xfe\x00x", 0}}, 0},
		{"tags", 0, []string{ts + " stdout P:x a", ts + " stdout F:x b"}, []out{{Stdout, "ab", 0}}, 0},
		{"malformed lines skipped", 0, []string{ts + " stdout P a", "garbage", ts + " stdin F x", ts + " stdout X y", "2026-12-02 stdout F z", ts + " stdout F b"},
			[]out{{Stdout, "ab", 0}}, 4},
		{"cut and marked", 4, []string{ts + " stdout P ab", ts + " stdout F cdef"}, []out{{Stdout, "abcd" + capture.TruncatedMarker, 2}}, 0},
		{"cut at a character", 5, []string{ts + " stdout F abcé€"}, []out{{Stdout, "abcé" + capture.TruncatedMarker, 3}}, 0},
		{"cut inside a character", 4, []string{ts + " stdout F abcé"}, []out{{Stdout, "abc" + capture.TruncatedMarker, 1}}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMerger(tc.max)
			var got []out
			bad := 0
			for _, l := range tc.lines {
				e, ok, err := m.Add([]byte(l))
				if errors.Is(err, ErrMalformed) {
					bad++
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					if !e.Time.Equal(time.Date(2026, 12, 2, 3, 46, 16, 123456789, time.UTC)) {
						t.Fatalf("time %v", e.Time)
					}
					got = append(got, out{e.Stream, string(e.Line), e.Truncated})
				}
			}
			if bad != tc.bad || len(got) != len(tc.want) {
				t.Fatalf("got %+v (%d malformed), want %+v (%d)", got, bad, tc.want, tc.bad)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("record %d: got %+v, want %+v", i, got[i], tc.want[i])
				}
			}
			if m.Open() {
				t.Fatal("a record is left open")
			}
		})
	}
}

// TestMergerMemoryIsBounded: a record of 64 MiB in 16 KiB chunks costs the
// cap, not its size.
func TestMergerMemoryIsBounded(t *testing.T) {
	m := NewMerger(1 << 20)
	chunk := []byte("2026-12-02T03:46:16Z stdout P " + strings.Repeat("x", 16<<10))
	for range 4096 {
		if _, ok, err := m.Add(chunk); ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	e, ok, err := m.Add([]byte("2026-12-02T03:46:16Z stdout F end"))
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	if len(e.Line) != 1<<20+len(capture.TruncatedMarker) || e.Truncated != 64<<20+3-(1<<20) {
		t.Fatalf("record of %d bytes, %d cut", len(e.Line), e.Truncated)
	}
	if c := cap(m.streams[Stdout].buf); c > 2<<20 {
		t.Fatalf("the merge buffer grew to %d bytes", c)
	}
}

func BenchmarkMerger(b *testing.B) {
	lines := [][]byte{
		[]byte(`2026-12-02T03:46:16.123456789Z stdout F 10.0.0.1 - - [02/Dec/2026:03:46:16 +0000] "GET /index.html HTTP/1.1" 200 612 "-" "curl/8.5.0"`),
		[]byte(`2026-12-02T03:46:16.123456790Z stderr F {"level":"info","ts":1764647176.123,"caller":"app/main.go:42","msg":"request served","status":200,"bytes":612}`),
	}
	m := NewMerger(0)
	var n int
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e, ok, _ := m.Add(lines[i%2])
		if ok {
			n += len(e.Line)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	_ = n
}
