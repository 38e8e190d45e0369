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
		return &ConfigMapStore{Client: c, OwnerAPIVersion: "logs.capturer.dev/v1alpha1", OwnerKind: "LogPipeline"}, c
	}
	get := func(c *fake.Clientset) *corev1.ConfigMap {
		cm, err := c.CoreV1().ConfigMaps("shop").Get(ctx, "web-positions", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cm
	}

	t.Run("nothing stored, then written, updated, forgotten and written again", func(t *testing.T) {
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
			len(cm.OwnerReferences) != 1 || cm.OwnerReferences[0].UID != "uid-1" {
			t.Fatalf("stored %+v", cm)
		}
		if data, err := s.Load(ctx, ref); string(data) != "three" || err != nil {
			t.Fatalf("Load = %q, %v", data, err)
		}
	})
	t.Run("foreign object is neither read nor written", func(t *testing.T) {
		s, c := newStore(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-positions"},
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
		s, c := newStore(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-positions",
			Labels:          map[string]string{PositionsLabel: "web"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "LogPipeline", Name: "web", UID: types.UID("old-uid")}}},
			BinaryData: map[string][]byte{PositionsDataKey: []byte("old")}})
		if data, err := s.Load(ctx, ref); data != nil || err != nil {
			t.Fatalf("Load = %q, %v; want nothing from the old pipeline", data, err)
		}
		if err := s.Save(ctx, ref, []byte("new"), 1); err != nil {
			t.Fatal(err)
		}
		if cm := get(c); cm.OwnerReferences[0].UID != "uid-1" || string(cm.BinaryData[PositionsDataKey]) != "new" {
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
		if got := PositionsConfigMapName(name); len(got) > 253 {
			t.Errorf("%d characters for a %d-character pipeline name", len(got), len(name))
		}
	}
	if PositionsConfigMapName(string(long)) == PositionsConfigMapName(string(long[:252])+"b") {
		t.Error("two long names share a ConfigMap")
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
		s := &ConfigMapStore{Client: c, OwnerAPIVersion: "logs.capturer.dev/v1alpha1", OwnerKind: "LogPipeline"}
		ref := capture.PipelineRef{Namespace: "shop", Name: name, UID: "uid-1"}
		if err := s.Save(ctx, ref, []byte("data"), 1); err != nil {
			t.Fatalf("%d characters: %v", n, err)
		}
		fresh := &ConfigMapStore{Client: c, OwnerAPIVersion: "logs.capturer.dev/v1alpha1", OwnerKind: "LogPipeline"}
		if got, err := fresh.Load(ctx, ref); err != nil || string(got) != "data" {
			t.Fatalf("%d characters: loaded %q, %v", n, got, err)
		}
	}
	if PositionsLabelValue(strings.Repeat("a", 100)) == PositionsLabelValue(strings.Repeat("a", 99)+"b") {
		t.Error("two long names share a label value")
	}
}
