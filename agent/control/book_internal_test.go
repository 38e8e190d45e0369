package control

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/log-capturer/log-capturer/capture"
)

type noPods struct{}

func (noPods) PodsOnNode(context.Context, string) ([]corev1.Pod, error) { return nil, nil }

func TestBookTombstones(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	b := NewBook()
	b.now = func() time.Time { return now }
	deleted := func() []capture.PipelineRef {
		t.Helper()
		nc, _, err := b.ForNode(context.Background(), noPods{}, "node-a")
		if err != nil {
			t.Fatal(err)
		}
		return nc.Deleted
	}
	web := types.NamespacedName{Namespace: "shop", Name: "web"}
	b.Apply(web, capture.PipelineConfig{Namespace: "shop", Name: "web", UID: "uid-1"})
	before, _, _ := b.ForNode(context.Background(), noPods{}, "node-a")
	b.Delete(web)
	if got := deleted(); len(got) != 1 || got[0] != (capture.PipelineRef{Namespace: "shop", Name: "web", UID: "uid-1"}) {
		t.Fatalf("announced %v, want shop/web uid-1", got)
	}
	if after, _, _ := b.ForNode(context.Background(), noPods{}, "node-a"); after.Revision == before.Revision {
		t.Error("a deletion did not change the node's revision")
	}
	b.Apply(web, capture.PipelineConfig{Namespace: "shop", Name: "web", UID: "uid-2"})
	if got := deleted(); len(got) != 0 {
		t.Errorf("made again under its name, still announced deleted: %v", got)
	}
	b.Delete(web)
	now = now.Add(TombstoneTTL + time.Second)
	if got := deleted(); len(got) != 0 {
		t.Errorf("announced past the TTL: %v", got)
	}
	for i := range MaxTombstones + 5 {
		now = now.Add(time.Millisecond)
		b.Delete(types.NamespacedName{Namespace: "shop", Name: fmt.Sprintf("p-%05d", i)})
	}
	got := deleted()
	if len(got) != MaxTombstones || got[0].Name != "p-00005" {
		t.Errorf("%d announced, first %v; want the newest %d", len(got), got[0], MaxTombstones)
	}
}
