package demo

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// ErrIncomplete is returned when a line of the run was not delivered exactly once.
var ErrIncomplete = errors.New("not every line of this run arrived exactly once")

// lineKey identifies a line within a container: its timestamp and text.
// Generated lines that share both are counted as many times as they occur.
type lineKey struct {
	ts   int64
	line string
}

// multiset counts lines by key.
type multiset map[lineKey]int

// ledger records every line a run generated, per container
// ("namespace/pod/container"), so that what arrives can be checked line by
// line in both directions.
type ledger struct {
	mu    sync.Mutex
	lines map[string]multiset
	count map[string]int
}

func newLedger() *ledger { return &ledger{lines: map[string]multiset{}, count: map[string]int{}} }

func (l *ledger) add(container string, ts time.Time, line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.lines[container]
	if m == nil {
		m = multiset{}
		l.lines[container] = m
	}
	m[lineKey{ts.UnixNano(), line}]++
	l.count[container]++
}

// generated returns a copy of what was generated.
func (l *ledger) generated() map[string]multiset {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]multiset, len(l.lines))
	for c, m := range l.lines {
		cp := make(multiset, len(m))
		for k, v := range m {
			cp[k] = v
		}
		out[c] = cp
	}
	return out
}

// ContainerResult compares what one container generated with what one sink
// delivered of it.
type ContainerResult struct {
	Container string
	Generated int
	Delivered int
	// Missing lines were generated but not delivered; Duplicated lines were
	// delivered more often than generated (or never generated at all).
	Missing    int
	Duplicated int
}

// compare matches delivered against generated, line by line.
func compare(container string, generated, delivered multiset) ContainerResult {
	r := ContainerResult{Container: container}
	for k, g := range generated {
		d := delivered[k]
		r.Generated += g
		r.Missing += max(0, g-d)
	}
	for k, d := range delivered {
		r.Delivered += d
		r.Duplicated += max(0, d-generated[k])
	}
	return r
}

// compareAll compares every container, sorted by name; a container that
// only appears in delivered is reported too.
func compareAll(generated, delivered map[string]multiset) []ContainerResult {
	names := map[string]bool{}
	for c := range generated {
		names[c] = true
	}
	for c := range delivered {
		names[c] = true
	}
	sorted := make([]string, 0, len(names))
	for c := range names {
		sorted = append(sorted, c)
	}
	sort.Strings(sorted)
	out := make([]ContainerResult, 0, len(sorted))
	for _, c := range sorted {
		out = append(out, compare(c, generated[c], delivered[c]))
	}
	return out
}

// union merges the containers' multisets into one (Loki's labels do not
// name the pod, so Loki is checked over all lines at once).
func union(per map[string]multiset) multiset {
	out := multiset{}
	for _, m := range per {
		for k, v := range m {
			out[k] += v
		}
	}
	return out
}

// problems describes, as a user reads it, every way results differ from
// exactly once.
func problems(sink string, results []ContainerResult) []string {
	var out []string
	for _, r := range results {
		if r.Missing > 0 {
			out = append(out, fmt.Sprintf("%s: %d of %d lines of %s missing", sink, r.Missing, r.Generated, r.Container))
		}
		if r.Duplicated > 0 {
			out = append(out, fmt.Sprintf("%s: %d lines of %s delivered more than once", sink, r.Duplicated, r.Container))
		}
	}
	return out
}

// readFileSink reads the File sink's records of one run, in the current
// file and the rotated (gzipped) ones, per container.
func readFileSink(pattern string) (map[string]multiset, error) {
	out := map[string]multiset{}
	files, err := filepath.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", pattern, err)
	}
	for _, f := range files {
		if err := readFile(f, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func readFile(path string, out map[string]multiset) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var rec struct {
			TS                        time.Time
			Namespace, Pod, Container string
			Line                      string
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue // a record cut by a crash; not one of ours
		}
		c := rec.Namespace + "/" + rec.Pod + "/" + rec.Container
		if out[c] == nil {
			out[c] = multiset{}
		}
		out[c][lineKey{rec.TS.UnixNano(), rec.Line}]++
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return nil
}
