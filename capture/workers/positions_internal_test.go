package workers

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/log-capturer/log-capturer/capture/crifile"
)

func TestPositionsRoundTrip(t *testing.T) {
	since := time.Date(2026, 11, 27, 10, 0, 5, 0, time.UTC)
	in := []storedPosition{
		{Key: containerKey{uid: "u1", name: "app"}, Pod: "web-1",
			Committed: Position{Since: since, Count: 3, First: since.Add(123456789), Last: since.Add(923456789), LastRun: 2},
			Sent:      Position{Since: since.Add(2 * time.Second), Count: 7}},
		{Key: containerKey{uid: "u2", name: "sidecar"}, Pod: "web-2",
			Committed: Position{Since: since, Count: 1, First: since, Last: since.Add(-time.Millisecond), LastRun: 1}, GoneSince: since.Add(time.Minute)},
		{Key: containerKey{uid: "u3", name: "new"}, Pod: "web-3"}, // startAt Beginning, nothing read yet
	}
	in[1].Sent = in[1].Committed
	data, err := encodePositions(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodePositions(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d entries, want %d", len(out), len(in))
	}
	for i := range in {
		a, b := in[i], out[i]
		if a.Key != b.Key || a.Pod != b.Pod || !a.Committed.Since.Equal(b.Committed.Since) || a.Committed.Count != b.Committed.Count ||
			!a.Committed.First.Equal(b.Committed.First) || !a.Committed.Last.Equal(b.Committed.Last) || a.Committed.LastRun != b.Committed.LastRun ||
			!a.Sent.Since.Equal(b.Sent.Since) || a.Sent.Count != b.Sent.Count ||
			!a.GoneSince.Equal(b.GoneSince) {
			t.Errorf("entry %d: %+v came back as %+v", i, a, b)
		}
	}
}

func gz(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return b.Bytes()
}

func TestDecodePositionsRejectsDamage(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"not gzip", "not gzip-compressed", []byte("hello")},
		{"empty", "empty positions", gz("")},
		{"newer format", `unknown positions format "log-capturer positions v9"`, gz("log-capturer positions v9\n")},
		{"foreign text", "unknown positions format", gz("{\"json\": true}\n")},
		{"missing field", "positions line 2: 10 fields", gz(positionsHeader + "\nu main pod 1 2 3 0 1 = =\n")},
		{"bad number", "positions line 2", gz(positionsHeader + "\nu main pod 1 x 3 0 1 = = 0\n")},
		{"negative time", "bad time", gz(positionsHeader + "\nu main pod -5 1 3 0 1 = = 0\n")},
		{"first beyond a second", "bad count", gz(positionsHeader + "\nu main pod 5 1 2000000000 0 1 = = 0\n")},
		{"negative last run", "bad last run", gz(positionsHeader + "\nu main pod 5 1 2 0 -1 = = 0\n")},
		{"truncated gzip", "unexpected EOF", gz(positionsHeader + "\nu main pod 5 1 2 0 1 = = 0\n")[:30]},
		{"an over-long name", "longer than 253 bytes", gz(positionsHeader + "\nu main " + strings.Repeat("p", 254) + " 5 1 2 0 1 = = 0\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodePositions(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestPositionsBombsAreRefusedWithinBounds decodes positions objects a
// tenant could write into its namespace: millions of entries in a few
// hundred KiB of gzip. Decoding refuses them with a clear error, and the
// heap grows by far less than the entries would take.
func TestPositionsBombsAreRefusedWithinBounds(t *testing.T) {
	entry := "u main pod 5 1 2 0 1 = = 0\n"
	for _, tc := range []struct {
		name, want string
		entries    int
	}{
		{"3 million entries (inflates past the size bound)", "positions larger than", 3_000_000},
		{"entries past the count bound, within the size bound", "more than 50000 positions", 60_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := gz(positionsHeader + "\n" + strings.Repeat(entry, tc.entries))
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := decodePositions(data)
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d KiB of gzip, %d entries: refused after allocating %d MiB", len(data)>>10, tc.entries, alloc>>20)
			if alloc > 64<<20 {
				t.Fatalf("decoding allocated %d MiB before refusing", alloc>>20)
			}
		})
	}
}

// TestPositionsOf10000ContainersFit checks the stored size for 10,000
// containers with realistic names against the 1 MiB object limit.
func TestPositionsOf10000ContainersFit(t *testing.T) {
	since := time.Now().Truncate(time.Second).UTC()
	entries := make([]storedPosition, 0, 10000)
	for i := range 10000 {
		pod := fmt.Sprintf("checkout-api-7d9f8c6b5d-%05x", i*7919)
		entries = append(entries, storedPosition{
			Key:       containerKey{uid: uuid.NewUUID(), name: []string{"app", "istio-proxy"}[i%2]},
			Pod:       pod,
			Committed: Position{Since: since.Add(-time.Duration(i%300) * time.Second), Count: int64(i % 97), First: since.Add(time.Duration(i*7919%1e9) - time.Duration(i%300)*time.Second)},
			Sent:      Position{Since: since, Count: int64(i % 13)},
		})
	}
	data, err := encodePositions(entries)
	if err != nil {
		t.Fatal(err)
	}
	// A ConfigMap carries binaryData base64-encoded in JSON (4/3) plus metadata.
	if onWire := len(data) * 4 / 3; onWire > 512<<10 {
		t.Fatalf("10,000 positions take %d bytes (%d as JSON), more than half the 1 MiB object limit", len(data), onWire)
	}
	t.Logf("10,000 positions: %d bytes compressed, %d base64", len(data), len(data)*4/3)
	back, err := decodePositions(data)
	if err != nil || len(back) != 10000 {
		t.Fatalf("decoded %d entries: %v", len(back), err)
	}
}

func TestPositionsPruneGoneContainers(t *testing.T) {
	ps := newTracker()
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	keep := containerKey{uid: "a", name: "app"}
	recent := containerKey{uid: "b", name: "app"}
	old := containerKey{uid: "c", name: "app"}
	for _, k := range []containerKey{keep, recent, old} {
		ps.resumeFrom(k, "pod", "node-a", Position{})
	}
	ps.retain(map[containerKey]bool{keep: true, recent: true}, now.Add(-2*time.Hour)) // old leaves
	ps.retain(map[containerKey]bool{keep: true}, now.Add(-30*time.Minute))            // recent leaves
	got, changed := ps.changes(now, time.Hour)
	if !changed {
		t.Fatal("the positions changed")
	}
	names := map[types.UID]bool{}
	for _, e := range got {
		names[e.Key.uid] = true
	}
	if !names["a"] || !names["b"] || names["c"] || len(got) != 2 {
		t.Fatalf("kept %v, want a (selected) and b (gone 30m, retention 1h)", names)
	}
	if _, changed := ps.changes(now, time.Hour); changed {
		t.Fatal("nothing changed since the last snapshot")
	}
	// Selected again: b is no longer gone.
	ps.retain(map[containerKey]bool{keep: true, recent: true}, now)
	got, _ = ps.changes(now.Add(2*time.Hour), time.Hour)
	if len(got) != 2 {
		t.Fatalf("%d entries after b came back, want 2", len(got))
	}
}

// TestPositionsCommitOnlyAcknowledgedPrefix checks that a position advances
// to a line only once every sink acknowledged it and every line before it,
// whatever order the acknowledgements come in.
func TestPositionsCommitOnlyAcknowledgedPrefix(t *testing.T) {
	ps := newTracker()
	k := containerKey{uid: "u", name: "app"}
	ps.resumeFrom(k, "pod", "node-a", Position{})
	base := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	var recs []*tracked
	var pos Position
	for i := range 5 {
		pos.deliver(base.Add(time.Duration(i) * time.Millisecond))
		r := &tracked{key: k, pos: pos}
		ps.track(r, 2) // two sinks
		recs = append(recs, r)
	}
	committed := func() int64 {
		ps.mu.Lock()
		defer ps.mu.Unlock()
		return ps.entries[k].committed.Count
	}
	recs[1].Ack()
	recs[1].Ack() // line 2 done by both sinks, line 1 by none
	if c := committed(); c != 0 {
		t.Fatalf("committed %d lines before the first was acknowledged", c)
	}
	recs[0].Ack() // one sink only
	if c := committed(); c != 0 {
		t.Fatalf("committed %d lines before the second sink acknowledged line 1", c)
	}
	recs[0].Ack()
	if c := committed(); c != 2 {
		t.Fatalf("committed %d lines, want 2", c)
	}
	for _, r := range recs[2:] {
		r.Ack()
	}
	for _, r := range recs[2:] {
		r.Ack()
	}
	if c := committed(); c != 5 {
		t.Fatalf("committed %d lines, want 5", c)
	}
	ps.mu.Lock()
	left := len(ps.entries[k].inflight)
	ps.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d records still tracked", left)
	}
}

// TestPositionsCollapseBehindAStuckRecord checks that a sink retrying one
// batch while another acknowledges keeps the tracked records bounded.
func TestPositionsCollapseBehindAStuckRecord(t *testing.T) {
	ps := newTracker()
	k := containerKey{uid: "u", name: "app"}
	ps.resumeFrom(k, "pod", "node-a", Position{})
	base := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	var pos Position
	var stuck *tracked
	for i := range 100000 {
		pos.deliver(base.Add(time.Duration(i) * time.Microsecond))
		r := &tracked{key: k, pos: pos}
		ps.track(r, 1)
		if i == 0 {
			stuck = r
			continue
		}
		r.Ack()
	}
	ps.mu.Lock()
	n := len(ps.entries[k].inflight)
	ps.mu.Unlock()
	if n > 10000 {
		t.Fatalf("%d records tracked behind one unacknowledged record", n)
	}
	stuck.Ack()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if got := ps.entries[k].committed; got.Count != pos.Count || !got.Since.Equal(pos.Since) {
		t.Fatalf("committed %+v, want %+v", got, pos)
	}
}

// TestPositionsV1StaysReadable decodes positions as version 1 wrote them:
// an upgraded operator must resume from what the previous one stored.
func TestPositionsV1StaysReadable(t *testing.T) {
	text, err := os.ReadFile("testdata/positions-v1.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodePositions(gz(string(text)))
	if err != nil {
		t.Fatal(err)
	}
	since := time.Unix(1795770000, 0).UTC()
	if len(got) != 2 || got[0].Key != (containerKey{uid: "0f8fad5b-d9cb-469f-a165-70867728950e", name: "app"}) ||
		!got[0].Committed.Since.Equal(since) || got[0].Committed.Count != 3 ||
		!got[0].Committed.First.Equal(since.Add(250*time.Millisecond)) || !got[0].Committed.Last.Equal(since.Add(750*time.Millisecond)) ||
		got[0].Committed.LastRun != 2 || got[0].Sent.Count != 9 || !got[1].Committed.Last.Equal(time.Unix(1795769990, 0).Add(-5*time.Microsecond)) ||
		got[1].Sent != got[1].Committed || !got[1].GoneSince.Equal(time.Unix(1795770100, 0)) {
		t.Fatalf("v1 positions decoded as %+v", got)
	}
}

// TestPositionsV2CarriesFilePositions: positions of containers read from
// the kubelet's files keep the log, the file's identity and the offsets;
// without any file position the format stays v1, which earlier versions read.
func TestPositionsV2CarriesFilePositions(t *testing.T) {
	since := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	head := "2026-12-02T06:00:00.123456789Z stdout F \xff binary head with spaces  "
	in := []storedPosition{
		{Key: containerKey{uid: "u1", name: "app"}, Pod: "web-1",
			Committed: Position{Since: since, Count: 2, First: since.Add(5), Last: since.Add(9), LastRun: 1, Log: "3.log",
				File: crifile.Position{File: crifile.Identity{Dev: 2049, Ino: 1234567, Head: head}, Offset: 4096, Size: 8192}}},
		{Key: containerKey{uid: "u2", name: "api"}, Pod: "web-2",
			Committed: Position{Since: since, Count: 1, First: since, Last: since, LastRun: 1}},
	}
	in[0].Sent, in[1].Sent = in[0].Committed, in[1].Committed
	data, err := encodePositions(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodePositions(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].Committed.Log != "3.log" || out[0].Committed.File != in[0].Committed.File ||
		out[1].Committed.Log != "" || !out[1].Committed.File.IsZero() || out[0].Sent.File != in[0].Committed.File {
		t.Fatalf("v2 positions came back as %+v", out)
	}
	v1, err := encodePositions(in[1:])
	if err != nil {
		t.Fatal(err)
	}
	if text := gunzip(t, v1); !strings.HasPrefix(text, positionsHeader+"\n") {
		t.Fatalf("positions without file positions start %.40q, want v1", text)
	}
	for _, tc := range []struct{ name, line, want string }{
		{"bad log", "u main pod 5 1 2 0 1 = = 0 x.log 1 2 - 0 0", "bad log"},
		{"negative offset", "u main pod 5 1 2 0 1 = = 0 0.log 1 2 - -1 0", "negative"},
		{"over-long head", "u main pod 5 1 2 0 1 = = 0 0.log 1 2 " + strings.Repeat("A", 200) + " 0 0", "longer than"},
		{"file without log", "u main pod 5 1 2 0 1 = = 0 - 1 2 - 0 0", "without its log"},
		{"v1 line in v2", "u main pod 5 1 2 0 1 = = 0", "11 fields, want 17"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodePositions(gz(positionsHeaderV2 + "\n" + tc.line + "\n"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func gunzip(t *testing.T, b []byte) string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := out.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestRenamedFileGoesFirst: a container whose slice ended inside a file the
// kubelet renamed is scheduled before every other waiting one.
func TestRenamedFileGoesFirst(t *testing.T) {
	p := &pipeline{}
	a, b, c := &container{name: "a"}, &container{name: "b"}, &container{name: "c"}
	p.enqueue(a, time.Time{})
	p.enqueue(b, time.Time{})
	p.enqueue(c, time.Time{})
	p.toFront(c)
	if got := []string{p.ready[0].name, p.ready[1].name, p.ready[2].name}; got[0] != "c" || got[1] != "a" || got[2] != "b" {
		t.Fatalf("ready %v, want [c a b]", got)
	}
	p.toFront(a) // not the last one enqueued: nothing moves
	if p.ready[0] != c {
		t.Fatalf("toFront moved a container that was not just enqueued")
	}
}
