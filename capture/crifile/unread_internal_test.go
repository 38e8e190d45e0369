package crifile

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnread(t *testing.T) {
	dir := t.TempDir()
	line := func(c byte, n int) []byte { return []byte(strings.Repeat(string(c), n-1) + "\n") }
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(line('a', 300))
	_ = zw.Close()
	gzPath := write("0.log.20261203-100000.gz", gz.Bytes())
	rotPath := write("0.log.20261203-100010", line('b', 200))
	livePath := write("0.log", line('c', 1000))
	write("0.log.20261203-100020.tmp", line('x', 50)) // the kubelet's gzip in progress: not a file of the log
	write("1.log", line('d', 70))                     // another instance's log

	pos := func(path string, gzipped bool, offset int64) Position {
		id, _, err := identify(path, gzipped)
		if err != nil {
			t.Fatal(err)
		}
		return Position{File: id, Offset: offset}
	}
	gone := pos(livePath, false, 0)
	gone.File.Ino++ // a file the kubelet deleted
	tests := []struct {
		name string
		pos  Position
		want int64
	}{
		{"no position: every file", Position{}, 300 + 200 + 1000},
		{"in the live file", pos(livePath, false, 400), 600},
		{"at the live file's end", pos(livePath, false, 1000), 0},
		{"in the rotated file: its rest and the live file", pos(rotPath, false, 50), 150 + 1000},
		{"in the gzipped file, by its uncompressed size", pos(gzPath, true, 100), 200 + 200 + 1000},
		{"in a file no longer there: every file", gone, 1500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Unread(dir, "0.log", tt.pos)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Unread = %d, want %d", got, tt.want)
			}
		})
	}
	if _, err := Unread(filepath.Join(dir, "missing"), "0.log", Position{}); err == nil {
		t.Error("Unread of a missing directory: no error")
	}
}
