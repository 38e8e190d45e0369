package workers

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/log-capturer/log-capturer/capture"
)

// TestTrackerHandsOverAtPositions checks the tracker's side of a container
// moving between the API engine and a node agent: what it hands on (only
// once nothing is in flight), and which offered position it takes.
func TestTrackerHandsOverAtPositions(t *testing.T) {
	base := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	ps := newTracker()
	onA := containerKey{uid: "u1", name: "app"}
	onB := containerKey{uid: "u2", name: "app"}
	ps.resumeFrom(onA, "pod-1", "node-a", Position{})
	ps.resumeFrom(onB, "pod-2", "node-b", Position{})
	var pos Position
	var recs []*tracked
	for i := range 3 {
		pos.deliver(base.Add(time.Duration(i) * time.Millisecond))
		r := &tracked{key: onA, pos: pos}
		ps.track(r, 1)
		recs = append(recs, r)
	}
	if _, settled := ps.handed("node-a"); settled {
		t.Fatal("handed says settled with 3 lines in flight")
	}
	for _, r := range recs {
		r.Ack()
	}
	got, settled := ps.handed("node-a")
	if !settled {
		t.Fatal("handed says not settled with every line acknowledged")
	}
	want := []capture.ContainerPosition{{UID: "u1", Container: "app", Pod: "pod-1", Since: base, Count: 3, First: base,
		Last: base.Add(2 * time.Millisecond), LastRun: 1}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("handed(node-a) (-want +got):\n%s", d)
	}

	// A position from the store whose node is not known is handed too.
	stored := containerKey{uid: "u3", name: "app"}
	ps.restore([]storedPosition{{Key: stored, Pod: "pod-3", Committed: Position{Since: base, Count: 9}}})
	got, _ = ps.handed("node-a")
	if len(got) != 2 || got[1].UID != "u3" {
		t.Errorf("handed(node-a) = %+v, want pod-1's and the stored pod-3's", got)
	}

	// An offer further than the container's own replaces it; an older one
	// does not; a container not selected yet is kept with it.
	later := capture.ContainerPosition{UID: "u1", Container: "app", Pod: "pod-1", Since: base.Add(time.Second), Count: 5}
	ps.offer(later)
	ps.offer(capture.ContainerPosition{UID: "u1", Container: "app", Pod: "pod-1", Since: base, Count: 1})
	c, _, ok := ps.resumeFrom(onA, "pod-1", "node-a", Position{})
	if !ok || c.Since != later.Since || c.Count != 5 {
		t.Errorf("after the offers container 1 resumes from %+v, want the later offer", c)
	}
	fresh := capture.ContainerPosition{UID: "u4", Container: "app", Pod: "pod-4", Since: base, Count: 2}
	ps.offer(fresh)
	c, _, ok = ps.resumeFrom(containerKey{uid: "u4", name: "app"}, "pod-4", "node-a", Position{})
	if !ok || c.Count != 2 {
		t.Errorf("a container offered before it was selected resumes from %+v (ok %v), want the offer", c, ok)
	}

	// A container being read takes no offer.
	r := &tracked{key: onB, pos: Position{Since: base, Count: 1}}
	ps.track(r, 1)
	ps.offer(capture.ContainerPosition{UID: "u2", Container: "app", Pod: "pod-2", Since: base.Add(time.Hour), Count: 1})
	r.Ack()
	c, _, _ = ps.resumeFrom(onB, "pod-2", "node-b", Position{})
	if c.Since != base {
		t.Errorf("a container with a line in flight took an offer: %+v", c)
	}
}
