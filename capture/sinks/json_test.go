package sinks

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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

// TestJSONPrefixFitting: for every limit, the prefix is the longest that
// escapes into at most limit bytes and never splits a character, whatever
// the escapes (quotes, controls, invalid bytes, multi-byte runes) cost.
func TestJSONPrefixFitting(t *testing.T) {
	escaped := func(s string) int { return len(appendJSONString(nil, s)) - 2 }
	for _, s := range []string{"", "plain ascii", `q"b\`, "tab\tnl\n\x01\x1f", "é🎉ü", "bad \xff\xe2\x82 end", "x\xf0\x9f\x8e\x89\"\x00é"} {
		for limit := 0; limit <= escaped(s)+2; limit++ {
			n := jsonPrefixFitting(s, limit)
			p := s[:n]
			if escaped(p) > limit {
				t.Fatalf("%q limit %d: prefix %q escapes to %d bytes", s, limit, p, escaped(p))
			}
			if n < len(s) {
				if strings.ToValidUTF8(p, "") != p && strings.ToValidUTF8(s, "") == s {
					t.Fatalf("%q limit %d: prefix %q splits a character", s, limit, p)
				}
				// One more character (a rune, or an invalid byte) would not fit.
				_, size := utf8.DecodeRuneInString(s[n:])
				next := n + size
				if escaped(s[:next]) <= limit {
					t.Fatalf("%q limit %d: prefix %q could take %q too", s, limit, p, s[n:next])
				}
			}
		}
	}
}
