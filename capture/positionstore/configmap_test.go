package positionstore

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/log-capturer/log-capturer/capture"
)

const home = "log-capturer-system"

func TestConfigMapStore(t *testing.T) {
	ctx := context.Background()
	ref := capture.PipelineRef{Namespace: "shop", Name: "web", UID: "uid-1"}
	newStore := func(objs ...*corev1.ConfigMap) (*ConfigMapStore, *fake.Clientset) {
		c := fake.NewClientset()
		for _, o := range objs {
			if _, err := c.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		return &ConfigMapStore{Client: c, Namespace: home, OwnerKind: "LogPipeline"}, c
	}
	get := func(c *fake.Clientset) *corev1.ConfigMap {
		cm, err := c.CoreV1().ConfigMaps(home).Get(ctx, "shop.web-positions", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cm
	}
	legacy := func(uid string, data string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-positions",
			Labels:          map[string]string{PositionsLabel: "web"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "LogPipeline", Name: "web", UID: types.UID(uid)}}},
			BinaryData: map[string][]byte{PositionsDataKey: []byte(data)}}
	}

	t.Run("nothing stored, then written, updated, forgotten, written again and deleted", func(t *testing.T) {
		s, c := newStore()
		if data, err := s.Load(ctx, ref); data != nil || err != nil {
			t.Fatalf("Load = %q, %v; want nothing", data, err)
		}
		for _, d := range []string{"one", "two"} {
			if err := s.Save(ctx, ref, []byte(d), 1); err != nil {
				t.Fatal(err)
			}
		}
		s.Forget(ref)
		if len(s.last) != 0 {
			t.Fatal("Forget kept the pipeline's ConfigMap in memory")
		}
		if err := s.Save(ctx, ref, []byte("three"), 3); err != nil {
			t.Fatal(err)
		}
		cm := get(c)
		if string(cm.BinaryData[PositionsDataKey]) != "three" || cm.Data["containers"] != "3" || cm.Labels[PositionsLabel] != "web" ||
			cm.Labels[PositionsNamespaceLabel] != "shop" || cm.Annotations[PipelineUIDAnnotation] != "uid-1" {
			t.Fatalf("stored %+v", cm)
		}
		if data, err := s.Load(ctx, ref); string(data) != "three" || err != nil {
			t.Fatalf("Load = %q, %v", data, err)
		}
		if list, _ := c.CoreV1().ConfigMaps("shop").List(ctx, metav1.ListOptions{}); len(list.Items) != 0 {
			t.Fatalf("the store wrote %d ConfigMaps in the tenant's namespace", len(list.Items))
		}
		if err := s.Delete(ctx, ref); err != nil {
			t.Fatal(err)
		}
		if data, err := s.Load(ctx, ref); data != nil || err != nil {
			t.Fatalf("after Delete: Load = %q, %v", data, err)
		}
		if err := s.Delete(ctx, ref); err != nil {
			t.Fatalf("deleting twice: %v", err)
		}
	})
	t.Run("positions an earlier version kept in the tenant's namespace are carried over", func(t *testing.T) {
		s, c := newStore(legacy("uid-1", "old"))
		if data, err := s.Load(ctx, ref); string(data) != "old" || err != nil {
			t.Fatalf("Load = %q, %v; want the earlier version's positions", data, err)
		}
		if err := s.Save(ctx, ref, []byte("new"), 1); err != nil {
			t.Fatal(err)
		}
		if string(get(c).BinaryData[PositionsDataKey]) != "new" {
			t.Fatal("not carried over into the operator's namespace")
		}
		fresh := &ConfigMapStore{Client: c, Namespace: home, OwnerKind: "LogPipeline"}
		if data, err := fresh.Load(ctx, ref); string(data) != "new" || err != nil {
			t.Fatalf("after the carry-over: Load = %q, %v", data, err)
		}
		if old, _ := c.CoreV1().ConfigMaps("shop").Get(ctx, "web-positions", metav1.GetOptions{}); string(old.BinaryData[PositionsDataKey]) != "old" {
			t.Fatal("the earlier object was written")
		}
	})
	t.Run("earlier positions of another pipeline or a deleted one are not carried over", func(t *testing.T) {
		for _, cm := range []*corev1.ConfigMap{legacy("old-uid", "old"),
			{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-positions"}, BinaryData: map[string][]byte{PositionsDataKey: []byte("x")}}} {
			s, _ := newStore(cm)
			if data, err := s.Load(ctx, ref); data != nil || err != nil {
				t.Fatalf("Load = %q, %v; want nothing", data, err)
			}
		}
	})
	t.Run("foreign object is neither read nor written", func(t *testing.T) {
		s, c := newStore(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: home, Name: "shop.web-positions"},
			Data: map[string]string{"mine": "yes"}})
		if _, err := s.Load(ctx, ref); !errors.Is(err, capture.ErrForeignPositions) {
			t.Fatalf("Load: %v, want capture.ErrForeignPositions", err)
		}
		if err := s.Save(ctx, ref, []byte("x"), 1); !errors.Is(err, capture.ErrForeignPositions) {
			t.Fatalf("Save: %v, want capture.ErrForeignPositions", err)
		}
		if cm := get(c); cm.Data["mine"] != "yes" || cm.BinaryData != nil {
			t.Fatalf("the foreign object changed: %+v", cm)
		}
	})
	t.Run("a deleted pipeline's object of the same name is taken over", func(t *testing.T) {
		s, c := newStore(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: home, Name: "shop.web-positions",
			Labels:      map[string]string{PositionsLabel: "web", PositionsNamespaceLabel: "shop"},
			Annotations: map[string]string{PipelineUIDAnnotation: "old-uid"}},
			BinaryData: map[string][]byte{PositionsDataKey: []byte("old")}})
		if data, err := s.Load(ctx, ref); data != nil || err != nil {
			t.Fatalf("Load = %q, %v; want nothing from the old pipeline", data, err)
		}
		if err := s.Save(ctx, ref, []byte("new"), 1); err != nil {
			t.Fatal(err)
		}
		if cm := get(c); cm.Annotations[PipelineUIDAnnotation] != "uid-1" || string(cm.BinaryData[PositionsDataKey]) != "new" {
			t.Fatalf("not taken over: %+v", cm)
		}
	})
}

func TestPositionsConfigMapNameFitsAnyPipelineName(t *testing.T) {
	long := make([]byte, 253)
	for i := range long {
		long[i] = 'a'
	}
	for _, name := range []string{"web", string(long)} {
		if got := PositionsConfigMapName(strings.Repeat("n", 63), name); len(got) > 253 {
			t.Errorf("%d characters for a %d-character pipeline name", len(got), len(name))
		}
	}
	if PositionsConfigMapName("ns", string(long)) == PositionsConfigMapName("ns", string(long[:252])+"b") {
		t.Error("two long names share a ConfigMap")
	}
	// Namespaces are DNS labels, without dots: the first dot separates.
	if PositionsConfigMapName("a", "b-c") == PositionsConfigMapName("a-b", "c") {
		t.Error("pipelines of two namespaces share a ConfigMap")
	}
}

// TestLongPipelineNamesStorePositions checks that a pipeline name longer
// than a label value may be (64 to 253 characters) still gets a positions
// object the API server accepts, with a label no other pipeline shares.
func TestLongPipelineNamesStorePositions(t *testing.T) {
	ctx := context.Background()
	seen := map[string]string{}
	for _, n := range []int{1, 63, 64, 100, 253} {
		name := strings.Repeat("a", n-1) + "z"
		v := PositionsLabelValue(name)
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Fatalf("label value for a %d-character name: %v", n, errs)
		}
		if other, ok := seen[v]; ok {
			t.Fatalf("%q and %q share the label value %q", other, name, v)
		}
		seen[v] = name
		c := fake.NewClientset()
		s := &ConfigMapStore{Client: c, Namespace: home, OwnerKind: "LogPipeline"}
		ref := capture.PipelineRef{Namespace: "shop", Name: name, UID: "uid-1"}
		if err := s.Save(ctx, ref, []byte("data"), 1); err != nil {
			t.Fatalf("%d characters: %v", n, err)
		}
		fresh := &ConfigMapStore{Client: c, Namespace: home, OwnerKind: "LogPipeline"}
		if got, err := fresh.Load(ctx, ref); err != nil || string(got) != "data" {
			t.Fatalf("%d characters: loaded %q, %v", n, got, err)
		}
	}
	if PositionsLabelValue(strings.Repeat("a", 100)) == PositionsLabelValue(strings.Repeat("a", 99)+"b") {
		t.Error("two long names share a label value")
	}
}
