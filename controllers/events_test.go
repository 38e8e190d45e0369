package controllers

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEventNote(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"short", "batch rejected"},
		{"exactly the limit", strings.Repeat("x", maxEventNote)},
		{"long ASCII", strings.Repeat("x", 2000)},
		{"long multi-byte at the cut", strings.Repeat("é", 1000)},
		{"invalid UTF-8 passes through", strings.Repeat("\xff", 1500)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := eventNote(tc.in)
			if len(got) > maxEventNote {
				t.Fatalf("note of %d bytes, limit %d", len(got), maxEventNote)
			}
			if len(tc.in) <= maxEventNote {
				if got != tc.in {
					t.Fatalf("a note within the limit was changed")
				}
				return
			}
			if !strings.HasSuffix(got, "…[truncated]") {
				t.Fatalf("a cut note is not marked: %q", got[len(got)-20:])
			}
			if utf8.ValidString(tc.in) && !utf8.ValidString(got) {
				t.Fatalf("the cut split a character")
			}
		})
	}
}
