// Package patch writes what a reconcile changed on an object, once, at the
// end: the finalizers with a metadata patch and the status with a status
// patch, each only when it differs from what was read.
package patch

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Helper remembers an object as it was read and patches the differences.
type Helper struct {
	client client.Client
	before client.Object
}

// NewHelper snapshots obj; call it right after reading obj.
func NewHelper(obj client.Object, c client.Client) *Helper {
	return &Helper{client: c, before: obj.DeepCopyObject().(client.Object)}
}

// Patch writes obj's finalizers and status where they changed since
// NewHelper. The status is not written for an object whose last finalizer
// was just removed: it is gone.
func (h *Helper) Patch(ctx context.Context, obj client.Object) error {
	var errs []error
	if !equality.Semantic.DeepEqual(h.before.GetFinalizers(), obj.GetFinalizers()) {
		m := obj.DeepCopyObject().(client.Object)
		if err := h.client.Patch(ctx, m, client.MergeFrom(h.before)); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("patching finalizers: %w", err))
		}
		if !obj.GetDeletionTimestamp().IsZero() && len(obj.GetFinalizers()) == 0 {
			return kerrors.NewAggregate(errs)
		}
	}
	changed, err := statusChanged(h.before, obj)
	if err != nil {
		errs = append(errs, err)
	} else if changed {
		s := obj.DeepCopyObject().(client.Object)
		if err := h.client.Status().Patch(ctx, s, client.MergeFrom(h.before)); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("patching status: %w", err))
		}
	}
	return kerrors.NewAggregate(errs)
}

func statusChanged(before, after client.Object) (bool, error) {
	b, err := k8sruntime.DefaultUnstructuredConverter.ToUnstructured(before)
	if err != nil {
		return false, fmt.Errorf("converting object: %w", err)
	}
	a, err := k8sruntime.DefaultUnstructuredConverter.ToUnstructured(after)
	if err != nil {
		return false, fmt.Errorf("converting object: %w", err)
	}
	return !equality.Semantic.DeepEqual(b["status"], a["status"]), nil
}
