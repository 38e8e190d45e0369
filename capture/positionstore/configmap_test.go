package positionstore

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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
