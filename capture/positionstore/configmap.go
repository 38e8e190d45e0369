// Package positionstore keeps pipelines' positions: the
// capture.PositionStore adapters of the engine, in ConfigMaps of the cluster
// (ConfigMapStore) or in a node-local directory (Journal).
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

// Keys, labels and annotations of a positions ConfigMap.
const (
	// PositionsLabel marks a ConfigMap as the positions of the pipeline it
	// names (PositionsLabelValue of the pipeline's name).
	PositionsLabel = "logs.capturer.dev/positions-of"
	// PositionsNamespaceLabel names the pipeline's namespace.
	PositionsNamespaceLabel = "logs.capturer.dev/positions-namespace"
	// PipelineUIDAnnotation holds the UID of the pipeline the positions
	// belong to; an object of a deleted pipeline of the same name is taken over.
	PipelineUIDAnnotation = "logs.capturer.dev/pipeline-uid"
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

// shorten returns name, or a prefix of it and a hash of it when it is longer
// than an object name may be; suffix is kept.
func shorten(name, suffix string) string {
	if len(name)+len(suffix) <= maxNameLength {
		return name + suffix
	}
	sum := sha256.Sum256([]byte(name))
	keep := maxNameLength - len(suffix) - 9
	return name[:keep] + "-" + hex.EncodeToString(sum[:4]) + suffix
}

// PositionsConfigMapName is the name of a pipeline's positions ConfigMap in
// the operator's namespace: "<namespace>.<pipeline>-positions", shortened
// with a hash when that is too long.
func PositionsConfigMapName(namespace, pipeline string) string {
	return shorten(namespace+"."+pipeline, positionsSuffix)
}

// LegacyConfigMapName is where versions before 2026-12 kept a pipeline's
// positions: "<pipeline>-positions" in the pipeline's own namespace.
func LegacyConfigMapName(pipeline string) string { return shorten(pipeline, positionsSuffix) }

// ConfigMapStore keeps each pipeline's positions in a ConfigMap in the
// operator's own namespace, where tenants have no write access: a namespace
// editor can neither forge nor inflate them, and the operator writes no
// ConfigMap outside its namespace. The object is deleted with the pipeline
// (Delete). Positions written by an earlier version in the pipeline's
// namespace are read once, when no object exists here yet, and carried over
// by the next write; the old object is left to be garbage-collected with
// the pipeline it is owned by.
type ConfigMapStore struct {
	Client kubernetes.Interface
	// Namespace is the operator's namespace, where positions are kept.
	Namespace string
	// OwnerKind is the pipeline's kind, for reading legacy objects.
	OwnerKind string

	mu sync.Mutex
	// last is the last ConfigMap written per pipeline, for an update
	// without a read.
	last map[types.NamespacedName]*corev1.ConfigMap
}

func key(ref capture.PipelineRef) types.NamespacedName {
	return types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}
}

// Load returns the stored positions, nil when there are none or when they
// belong to a deleted pipeline of the same name.
func (s *ConfigMapStore) Load(ctx context.Context, ref capture.PipelineRef) ([]byte, error) {
	name := PositionsConfigMapName(ref.Namespace, ref.Name)
	cm, err := s.Client.CoreV1().ConfigMaps(s.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return s.loadLegacy(ctx, ref)
	}
	if err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", s.Namespace, name, err)
	}
	if err := s.check(cm, ref); err != nil {
		return nil, err
	}
	s.remember(ref, cm)
	if ref.UID != "" && cm.Annotations[PipelineUIDAnnotation] != ref.UID {
		return nil, nil // left by a deleted pipeline of the same name
	}
	return dataOf(cm)
}

// loadLegacy reads positions an earlier version kept in the pipeline's
// namespace. It is only ever read, never written or trusted beyond what the
// decoder's bounds allow: a tenant who rewrites it affects only its own
// pipeline, once.
func (s *ConfigMapStore) loadLegacy(ctx context.Context, ref capture.PipelineRef) ([]byte, error) {
	name := LegacyConfigMapName(ref.Name)
	cm, err := s.Client.CoreV1().ConfigMaps(ref.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the earlier positions ConfigMap %s/%s: %w", ref.Namespace, name, err)
	}
	if cm.Labels[PositionsLabel] != PositionsLabelValue(ref.Name) || !ownedBy(cm, s.OwnerKind, ref.UID) {
		return nil, nil // not ours, or of a deleted pipeline of the same name
	}
	return dataOf(cm)
}

func dataOf(cm *corev1.ConfigMap) ([]byte, error) {
	data, ok := cm.BinaryData[PositionsDataKey]
	if !ok {
		return nil, fmt.Errorf("ConfigMap %s/%s has no binaryData key %s", cm.Namespace, cm.Name, PositionsDataKey)
	}
	return data, nil
}

func ownedBy(cm *corev1.ConfigMap, kind, uid string) bool {
	if uid == "" {
		return true
	}
	for _, o := range cm.OwnerReferences {
		if o.Kind == kind && o.UID == types.UID(uid) {
			return true
		}
	}
	return false
}

// Save writes the positions, creating the ConfigMap when it does not exist.
func (s *ConfigMapStore) Save(ctx context.Context, ref capture.PipelineRef, data []byte, containers int) error {
	name := PositionsConfigMapName(ref.Namespace, ref.Name)
	s.mu.Lock()
	last := s.last[key(ref)]
	s.mu.Unlock()
	if last != nil {
		err := s.update(ctx, last.DeepCopy(), ref, data, containers)
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("updating ConfigMap %s/%s: %w", s.Namespace, name, err)
		}
	}
	// Unknown, changed or deleted since the last write: read it first.
	api := s.Client.CoreV1().ConfigMaps(s.Namespace)
	cur, err := api.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: name}}
		fill(cm, ref, data, containers)
		out, err := api.Create(ctx, cm, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating ConfigMap %s/%s: %w", s.Namespace, name, err)
		}
		s.remember(ref, out)
		return nil
	case err != nil:
		return fmt.Errorf("reading ConfigMap %s/%s: %w", s.Namespace, name, err)
	}
	if err := s.check(cur, ref); err != nil {
		return err
	}
	if err := s.update(ctx, cur, ref, data, containers); err != nil {
		return fmt.Errorf("updating ConfigMap %s/%s: %w", s.Namespace, name, err)
	}
	return nil
}

// update writes data into cm and updates it, remembering what was written.
func (s *ConfigMapStore) update(ctx context.Context, cm *corev1.ConfigMap, ref capture.PipelineRef, data []byte, containers int) error {
	fill(cm, ref, data, containers)
	out, err := s.Client.CoreV1().ConfigMaps(s.Namespace).Update(ctx, cm, metav1.UpdateOptions{})
	if err == nil {
		s.remember(ref, out)
	}
	return err //nolint:wrapcheck // the caller names the object
}

// Delete removes a deleted pipeline's positions; none stored is no error.
func (s *ConfigMapStore) Delete(ctx context.Context, ref capture.PipelineRef) error {
	s.Forget(ref)
	name := PositionsConfigMapName(ref.Namespace, ref.Name)
	err := s.Client.CoreV1().ConfigMaps(s.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting ConfigMap %s/%s: %w", s.Namespace, name, err)
	}
	return nil
}

// Forget drops the last written ConfigMap the store keeps for a pipeline;
// the Manager calls it when the pipeline's workers are removed.
func (s *ConfigMapStore) Forget(ref capture.PipelineRef) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.last, key(ref))
}

func (s *ConfigMapStore) check(cm *corev1.ConfigMap, ref capture.PipelineRef) error {
	if cm.Labels[PositionsLabel] != PositionsLabelValue(ref.Name) || cm.Labels[PositionsNamespaceLabel] != ref.Namespace {
		return fmt.Errorf("ConfigMap %s/%s lacks the labels %s=%s and %s=%s: %w", cm.Namespace, cm.Name,
			PositionsLabel, PositionsLabelValue(ref.Name), PositionsNamespaceLabel, ref.Namespace, capture.ErrForeignPositions)
	}
	return nil
}

func fill(cm *corev1.ConfigMap, ref capture.PipelineRef, data []byte, containers int) {
	if cm.Labels == nil {
		cm.Labels = map[string]string{}
	}
	cm.Labels[PositionsLabel] = PositionsLabelValue(ref.Name)
	cm.Labels[PositionsNamespaceLabel] = ref.Namespace
	cm.Labels["app.kubernetes.io/managed-by"] = "log-capturer"
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	if ref.UID != "" {
		cm.Annotations[PipelineUIDAnnotation] = ref.UID
	}
	cm.Data = map[string]string{
		"format":     "v1",
		"pipeline":   ref.Namespace + "/" + ref.Name,
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
	s.last[key(ref)] = cm
}
