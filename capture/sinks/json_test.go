package sinks

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/log-capturer/log-capturer/capture"
)

func TestAppendRecordJSONIsValidForAnyInput(t *testing.T) {
	lines := []string{
		"", "plain", `quotes " and \ backslash`, "tab\tnewline\nreturn\r", "nul\x00byte", "\x01\x1f control",
		"invalid \xff\xfe utf8", "truncated \xe2\x82", "emoji 🎉 and ünïcödé", strings.Repeat("x", 1<<20),
	}
	ts := time.Date(2026, 11, 27, 7, 0, 0, 123, time.UTC)
	for _, line := range lines {
		r := &capture.Record{Time: ts, Line: line, Namespace: "ns", Pod: "p", Container: "c", Node: "n",
			Labels: map[string]string{"b": "2", "a": "1"}}
		b := appendRecordJSON(nil, r)
		if b[len(b)-1] != '\n' || strings.Count(string(b), "\n") != 1 {
			t.Fatalf("record for %q is not exactly one line", trunc(line))
		}
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("invalid JSON for %q: %v", trunc(line), err)
		}
		var want string // what encoding/json makes of the same bytes
		ref, _ := json.Marshal(line)
		_ = json.Unmarshal(ref, &want)
		if got["line"] != want {
			t.Fatalf("line %q came back as %q", trunc(line), trunc(got["line"].(string)))
		}
		if got["ts"] != "2026-11-27T07:00:00.000000123Z" || got["labels"].(map[string]any)["a"] != "1" {
			t.Fatalf("unexpected record %s", trunc(string(b)))
		}
	}
}

func trunc(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// TestRecordJSONCarriesTheStreamWhenKnown: records from the kubelet's
// files say stdout or stderr; records from the API have no stream field.
func TestRecordJSONCarriesTheStreamWhenKnown(t *testing.T) {
	for _, tc := range []struct{ stream, want string }{{"stderr", `"node":"n","stream":"stderr","line":"x"`}, {"", `"node":"n","line":"x"`}} {
		b := string(appendRecordJSON(nil, &capture.Record{Line: "x", Node: "n", Stream: tc.stream}))
		if !strings.Contains(b, tc.want) {
			t.Errorf("stream %q: %s, want it to contain %s", tc.stream, b, tc.want)
		}
	}
}
