package controllers

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/internal/conditions"
	"github.com/log-capturer/log-capturer/internal/patch"
)

// SinkTargetReconciler validates SinkTargets and resolves their credentials,
// so that a broken sink shows on the SinkTarget itself.
type SinkTargetReconciler struct {
	client.Client
	// APIReader reads Secrets uncached.
	APIReader client.Reader
	Recorder  events.EventRecorder
}

// +kubebuilder:rbac:groups=logs.capturer.dev,resources=sinktargets,verbs=get;list;watch
// +kubebuilder:rbac:groups=logs.capturer.dev,resources=sinktargets/status,verbs=get;update;patch

// Reconcile checks one SinkTarget's configuration and credentials.
func (r *SinkTargetReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	obj := &logsv1alpha1.SinkTarget{}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !obj.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	helper := patch.NewHelper(obj, r.Client)
	oldReady := conditions.Get(obj, logsv1alpha1.ConditionReady).DeepCopy()
	defer func() {
		obj.Status.ObservedGeneration = obj.Generation
		recordTransition(r.Recorder, obj, oldReady)
		if err := helper.Patch(ctx, obj); err != nil {
			retErr = kerrors.NewAggregate([]error{retErr, err})
		}
	}()

	obj.Status.Type = obj.Spec.Type()
	_, err := resolveSink(ctx, newSecretReader(r.APIReader, obj.Namespace), obj)
	var se *stallError
	switch {
	case errors.As(err, &se):
		conditions.MarkFalse(obj, logsv1alpha1.ConditionReady, se.reason, "%s", se.message)
		conditions.MarkTrue(obj, logsv1alpha1.ConditionStalled, se.reason, "%s", se.message)
		conditions.Delete(obj, logsv1alpha1.ConditionReconciling)
		return ctrl.Result{}, nil
	case err != nil:
		conditions.MarkTrue(obj, logsv1alpha1.ConditionReconciling, logsv1alpha1.ReasonProgressing,
			"Resolving the sink failed and is retried: %v.", err)
		return ctrl.Result{}, err
	}
	conditions.MarkTrue(obj, logsv1alpha1.ConditionReady, logsv1alpha1.ReasonConfigurationValid,
		"The %s sink's configuration is valid and its %d referenced Secrets are resolved.",
		obj.Status.Type, len(secretNames(obj)))
	conditions.Delete(obj, logsv1alpha1.ConditionStalled)
	conditions.Delete(obj, logsv1alpha1.ConditionReconciling)
	return ctrl.Result{}, nil
}

// SetupWithManager registers the controller and its watches; SetupIndexes
// must have run on mgr.
func (r *SinkTargetReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&logsv1alpha1.SinkTarget{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.sinksForSecret)).
		Complete(r)
}

func (r *SinkTargetReconciler) sinksForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	list := &logsv1alpha1.SinkTargetList{}
	if err := r.List(ctx, list, client.InNamespace(o.GetNamespace()),
		client.MatchingFields{IndexSinkTargetSecret: o.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing SinkTargets for a Secret", "secret", client.ObjectKeyFromObject(o))
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return out
}
