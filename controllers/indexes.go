package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
)

const (
	// IndexPipelineSink indexes LogPipelines by the SinkTarget names in spec.sinks.
	IndexPipelineSink = "spec.sinks"
	// IndexSinkTargetSecret indexes SinkTargets by the Secrets they reference.
	IndexSinkTargetSecret = "spec.secretRefs"
)

// SetupIndexes registers the field indexes the controllers' watches use.
// Call it once per manager, before setting up the controllers.
func SetupIndexes(ctx context.Context, mgr ctrl.Manager) error {
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &logsv1alpha1.LogPipeline{}, IndexPipelineSink, func(o client.Object) []string {
		p := o.(*logsv1alpha1.LogPipeline)
		out := make([]string, 0, len(p.Spec.Sinks))
		for _, s := range p.Spec.Sinks {
			out = append(out, string(s))
		}
		return out
	}); err != nil {
		return fmt.Errorf("indexing LogPipelines by sink: %w", err)
	}
	if err := idx.IndexField(ctx, &logsv1alpha1.SinkTarget{}, IndexSinkTargetSecret, func(o client.Object) []string {
		return secretNames(o.(*logsv1alpha1.SinkTarget))
	}); err != nil {
		return fmt.Errorf("indexing SinkTargets by secret: %w", err)
	}
	return nil
}

// pipelinesNaming returns reconcile requests for the pipelines of a namespace
// that name any of the given SinkTargets.
func pipelinesNaming(ctx context.Context, c client.Reader, namespace string, sinks []string) []reconcile.Request {
	seen := map[string]bool{}
	var out []reconcile.Request
	for _, s := range sinks {
		list := &logsv1alpha1.LogPipelineList{}
		if err := c.List(ctx, list, client.InNamespace(namespace), client.MatchingFields{IndexPipelineSink: s}); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "listing LogPipelines for a SinkTarget", "sinkTarget", s)
			continue
		}
		for i := range list.Items {
			if n := list.Items[i].Name; !seen[n] {
				seen[n] = true
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
			}
		}
	}
	return out
}

// everyObject maps an event to a request for every object of a kind: a
// CapturePolicy change may concern any pipeline or SinkTarget.
func everyObject(c client.Reader, newList func() client.ObjectList) handler.MapFunc {
	return func(ctx context.Context, _ client.Object) []reconcile.Request {
		list := newList()
		if err := c.List(ctx, list); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "listing objects for a CapturePolicy change")
			return nil
		}
		objs, err := meta.ExtractList(list)
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "reading the listed objects")
			return nil
		}
		out := make([]reconcile.Request, 0, len(objs))
		for _, o := range objs {
			if co, ok := o.(client.Object); ok {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(co)})
			}
		}
		return out
	}
}

// deletingPredicate passes updates that start an object's deletion, which
// does not always change its generation.
func deletingPredicate() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectOld.GetDeletionTimestamp().IsZero() && !e.ObjectNew.GetDeletionTimestamp().IsZero()
		},
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}
