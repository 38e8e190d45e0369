package sinks

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/log-capturer/log-capturer/capture"
)

func TestLokiLineCutsAtACharacterBoundary(t *testing.T) {
	cut := lokiMaxLine - len(capture.TruncatedMarker)
	long := func(prefix int, char string) string {
		return strings.Repeat("a", prefix) + strings.Repeat(char, (lokiMaxLine+len(char))/len(char))
	}
	tests := []struct {
		name      string
		line      string
		truncated bool
		minKept   int // bytes of the line kept before the marker, at least
	}{
		{"short", "hello", false, 5},
		{"exactly the limit", strings.Repeat("x", lokiMaxLine), false, lokiMaxLine},
		{"ascii", strings.Repeat("x", 1<<20), true, cut},
		{"two-byte characters, cut inside one", long(1, "é"), true, cut - 1},
		{"two-byte characters, cut between", long(0, "é"), true, cut},
		{"four-byte characters at every offset 0", long(0, "😀"), true, cut - 3},
		{"four-byte characters at every offset 1", long(1, "😀"), true, cut - 3},
		{"four-byte characters at every offset 2", long(2, "😀"), true, cut - 3},
		{"four-byte characters at every offset 3", long(3, "😀"), true, cut - 3},
		{"continuation bytes only", strings.Repeat("\x80", 1<<19), true, cut - 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, truncated := cutLine(&capture.Record{Line: tt.line})
			if truncated != tt.truncated {
				t.Fatalf("truncated = %v, want %v", truncated, tt.truncated)
			}
			if !truncated {
				if got != tt.line {
					t.Fatalf("a line within the limit changed")
				}
				return
			}
			if len(got) > lokiMaxLine {
				t.Errorf("cut to %d bytes, over Loki's %d", len(got), lokiMaxLine)
			}
			kept, ok := strings.CutSuffix(got, capture.TruncatedMarker)
			if !ok {
				t.Fatalf("a cut line does not end in the marker")
			}
			if len(kept) < tt.minKept {
				t.Errorf("kept %d bytes, want at least %d", len(kept), tt.minKept)
			}
			if !strings.HasPrefix(tt.line, kept) {
				t.Errorf("the kept bytes are not the line's prefix")
			}
			if utf8.ValidString(tt.line) && !utf8.ValidString(got) {
				t.Errorf("a valid UTF-8 line was cut inside a character")
			}
		})
	}
}
