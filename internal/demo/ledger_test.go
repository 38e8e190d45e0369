package demo

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCompareIsExactInBothDirections(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	gen := map[string]multiset{
		"demo/web-1/web": {{t0.UnixNano(), "GET /"}: 1, {t0.UnixNano(), "GET /cart"}: 2, {t0.Add(time.Millisecond).UnixNano(), "GET /"}: 1},
		"demo/api-1/api": {{t0.UnixNano(), `{"msg":"ok"}`}: 3},
	}
	tests := []struct {
		name      string
		delivered map[string]multiset
		want      []string
	}{
		{"exactly once", gen, nil},
		{"one line missing", map[string]multiset{
			"demo/web-1/web": {{t0.UnixNano(), "GET /"}: 1, {t0.UnixNano(), "GET /cart"}: 1, {t0.Add(time.Millisecond).UnixNano(), "GET /"}: 1},
			"demo/api-1/api": gen["demo/api-1/api"],
		}, []string{"file: 1 of 4 lines of demo/web-1/web missing"}},
		{"a duplicate is not taken for a delivery", map[string]multiset{
			"demo/web-1/web": {{t0.UnixNano(), "GET /"}: 2, {t0.UnixNano(), "GET /cart"}: 2},
			"demo/api-1/api": {{t0.UnixNano(), `{"msg":"ok"}`}: 4},
		}, []string{"file: 1 lines of demo/api-1/api delivered more than once",
			"file: 1 of 4 lines of demo/web-1/web missing", "file: 1 lines of demo/web-1/web delivered more than once"}},
		{"a container never generated", map[string]multiset{
			"demo/web-1/web": gen["demo/web-1/web"], "demo/api-1/api": gen["demo/api-1/api"],
			"demo/old-1/old": {{t0.UnixNano(), "from an earlier run"}: 1},
		}, []string{"file: 1 lines of demo/old-1/old delivered more than once"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := problems("file", compareAll(gen, tc.delivered))
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestARunWithALineMissingFails checks the run's verdict: one line the File
// sink lacks fails the run with a message naming the container and the count.
func TestARunWithALineMissingFails(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	gen := map[string]multiset{"demo/web-1/web": {{t0.UnixNano(), "a"}: 1, {t0.UnixNano() + 1, "b"}: 1}}
	all := union(gen)
	ok := Summary{File: compareAll(gen, gen), Loki: compare("every container", all, all)}
	if err := check(ok); err != nil {
		t.Fatalf("a complete run failed: %v", err)
	}
	missing := Summary{File: compareAll(gen, map[string]multiset{"demo/web-1/web": {{t0.UnixNano(), "a"}: 1}}),
		Loki: compare("every container", all, all)}
	err := check(missing)
	if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "File sink: 1 of 2 lines of demo/web-1/web missing") {
		t.Fatalf("a run with a line missing: %v", err)
	}
}
