// Package positionstore keeps pipelines' positions in the cluster: the
// capture.PositionStore adapters of the engine.
package positionstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/log-capturer/log-capturer/capture"
)

// Keys and labels of a positions ConfigMap.
const (
	// PositionsLabel marks a ConfigMap as the positions of the pipeline it names.
	PositionsLabel = "logs.capturer.dev/positions-of"
	// PositionsDataKey holds the gzip-compressed positions in binaryData.
	PositionsDataKey = "positions.gz"
	positionsSuffix  = "-positions"
	maxNameLength    = 253
)

// maxLabelValue is the longest label value the API server accepts.
const maxLabelValue = 63

// PositionsLabelValue is the value of PositionsLabel for a pipeline: its name,
// or for a name longer than a label value may be, a prefix of it and a hash
// of the whole name.
func PositionsLabelValue(pipeline string) string {
	if len(pipeline) <= maxLabelValue {
		return pipeline
	}
	sum := sha256.Sum256([]byte(pipeline))
	return pipeline[:maxLabelValue-17] + "-" + hex.EncodeToString(sum[:8])
}

// PositionsConfigMapName is the name of a pipeline's positions ConfigMap:
// "<pipeline>-positions", shortened with a hash when that is too long.
func PositionsConfigMapName(pipeline string) string {
	if len(pipeline)+len(positionsSuffix) <= maxNameLength {
		return pipeline + positionsSuffix
	}
	sum := sha256.Sum256([]byte(pipeline))
	keep := maxNameLength - len(positionsSuffix) - 9
	return pipeline[:keep] + "-" + hex.EncodeToString(sum[:4]) + positionsSuffix
}

// ConfigMapStore keeps each pipeline's positions in a ConfigMap in the
// pipeline's namespace, owned by the pipeline so that it is deleted with it.
// A ConfigMap of that name without the PositionsLabel naming the pipeline is
// foreign and never written.
type ConfigMapStore struct {
	Client kubernetes.Interface
	// OwnerAPIVersion and OwnerKind describe the pipeline for the owner reference.
	OwnerAPIVersion string
	OwnerKind       string

	mu sync.Mutex
	// last is the last ConfigMap written per pipeline, for an update
	// without a read.
	last map[types.NamespacedName]*corev1.ConfigMap
}

// Load returns the stored positions, nil when there are none or when they
// belong to a deleted pipeline of the same name.
func (s *ConfigMapStore) Load(ctx context.Context, ref capture.PipelineRef) ([]byte, error) {
	cm, err := s.Client.CoreV1().ConfigMaps(ref.Namespace).Get(ctx, PositionsConfigMapName(ref.Name), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", ref.Namespace, PositionsConfigMapName(ref.Name), err)
	}
	if err := s.check(cm, ref); err != nil {
		return nil, err
	}
	s.remember(ref, cm)
	if !s.ownedBy(cm, ref) {
		return nil, nil // left by a deleted pipeline of the same name
	}
	data, ok := cm.BinaryData[PositionsDataKey]
	if !ok {
		return nil, fmt.Errorf("ConfigMap %s/%s has no binaryData key %s", cm.Namespace, cm.Name, PositionsDataKey)
	}
	return data, nil
}

// Save writes the positions, creating the ConfigMap when it does not exist.
func (s *ConfigMapStore) Save(ctx context.Context, ref capture.PipelineRef, data []byte, containers int) error {
	key := types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}
	name := PositionsConfigMapName(ref.Name)
	s.mu.Lock()
	last := s.last[key]
	s.mu.Unlock()
	if last != nil {
		err := s.update(ctx, last.DeepCopy(), ref, data, containers)
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("updating ConfigMap %s/%s: %w", ref.Namespace, name, err)
		}
	}
	// Unknown, changed or deleted since the last write: read it first.
	api := s.Client.CoreV1().ConfigMaps(ref.Namespace)
	cur, err := api.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: name}}
		s.fill(cm, ref, data, containers)
		out, err := api.Create(ctx, cm, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating ConfigMap %s/%s: %w", ref.Namespace, name, err)
		}
		s.remember(ref, out)
		return nil
	case err != nil:
		return fmt.Errorf("reading ConfigMap %s/%s: %w", ref.Namespace, name, err)
	}
	if err := s.check(cur, ref); err != nil {
		return err
	}
	if err := s.update(ctx, cur, ref, data, containers); err != nil {
		return fmt.Errorf("updating ConfigMap %s/%s: %w", ref.Namespace, name, err)
	}
	return nil
}

// update writes data into cm and updates it, remembering what was written.
func (s *ConfigMapStore) update(ctx context.Context, cm *corev1.ConfigMap, ref capture.PipelineRef, data []byte, containers int) error {
	s.fill(cm, ref, data, containers)
	out, err := s.Client.CoreV1().ConfigMaps(ref.Namespace).Update(ctx, cm, metav1.UpdateOptions{})
	if err == nil {
		s.remember(ref, out)
	}
	return err
}

// Forget drops the last written ConfigMap the store keeps for a pipeline;
// the Manager calls it when the pipeline's workers are removed.
func (s *ConfigMapStore) Forget(ref capture.PipelineRef) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.last, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name})
}

func (s *ConfigMapStore) check(cm *corev1.ConfigMap, ref capture.PipelineRef) error {
	if v := PositionsLabelValue(ref.Name); cm.Labels[PositionsLabel] != v {
		return fmt.Errorf("ConfigMap %s/%s lacks the label %s=%s: %w", cm.Namespace, cm.Name, PositionsLabel, v, capture.ErrForeignPositions)
	}
	return nil
}

func (s *ConfigMapStore) ownedBy(cm *corev1.ConfigMap, ref capture.PipelineRef) bool {
	if ref.UID == "" {
		return true
	}
	for _, o := range cm.OwnerReferences {
		if o.Kind == s.OwnerKind && o.UID == types.UID(ref.UID) {
			return true
		}
	}
	return false
}

func (s *ConfigMapStore) fill(cm *corev1.ConfigMap, ref capture.PipelineRef, data []byte, containers int) {
	if cm.Labels == nil {
		cm.Labels = map[string]string{}
	}
	cm.Labels[PositionsLabel] = PositionsLabelValue(ref.Name)
	cm.Labels["app.kubernetes.io/managed-by"] = "log-capturer"
	if ref.UID != "" && s.OwnerKind != "" && !s.ownedBy(cm, ref) {
		t := true
		cm.OwnerReferences = []metav1.OwnerReference{{APIVersion: s.OwnerAPIVersion, Kind: s.OwnerKind,
			Name: ref.Name, UID: types.UID(ref.UID), Controller: &t}}
	}
	cm.Data = map[string]string{
		"format":     "v1",
		"containers": strconv.Itoa(containers),
		"updated":    time.Now().UTC().Format(time.RFC3339),
		"README":     "Positions of the LogPipeline's containers (gzip text in binaryData). Written by log-capturer; deleting this object makes containers start from spec.startAt.",
	}
	cm.BinaryData = map[string][]byte{PositionsDataKey: data}
}

func (s *ConfigMapStore) remember(ref capture.PipelineRef, cm *corev1.ConfigMap) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = map[types.NamespacedName]*corev1.ConfigMap{}
	}
	s.last[types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}] = cm
}
