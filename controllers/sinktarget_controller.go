package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/controllers/internal/conditions"
	"github.com/log-capturer/log-capturer/controllers/internal/patch"
)

// SinkTargetReconciler validates SinkTargets and resolves their credentials,
// so that a broken sink shows on the SinkTarget itself.
type SinkTargetReconciler struct {
	client.Client
	// APIReader reads Secrets uncached.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// Prober checks the destination cheaply; nil skips the probe.
	Prober Prober
	// Deliveries reports what the pipelines delivered to a sink; nil skips it.
	Deliveries Deliveries
	// AllowRawStdout lets Stdout sinks write lines unescaped.
	AllowRawStdout bool
	// AllowInsecureSkipVerify lets sinks skip verifying certificates.
	AllowInsecureSkipVerify bool
	// DefaultSinkTypes are the sink types of namespaces that no
	// CapturePolicy selects; empty allows every type.
	DefaultSinkTypes []logsv1alpha1.PolicySinkType
	// WatchSecrets watches Secrets' metadata cluster-wide.
	WatchSecrets bool

	readyEvents readyEvents
	probes      *probes
}

// sinkRefreshInterval is how often a sink is probed and its delivery
// numbers refreshed.
const sinkRefreshInterval = 30 * time.Second

// Prober checks that a sink's destination can take records.
type Prober interface {
	Probe(ctx context.Context, c capture.SinkConfig) error
}

// Deliveries reports a SinkTarget's delivery numbers over all pipelines.
type Deliveries interface {
	SinkStats(namespace, name string) (capture.SinkStats, bool)
}

// +kubebuilder:rbac:groups=logs.capturer.dev,resources=sinktargets,verbs=get;list;watch
// +kubebuilder:rbac:groups=logs.capturer.dev,resources=sinktargets/status,verbs=get;update;patch

// Reconcile checks one SinkTarget's configuration and credentials.
func (r *SinkTargetReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	obj := &logsv1alpha1.SinkTarget{}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			r.readyEvents.forget(req.NamespacedName)
			if r.probes != nil {
				r.probes.forget(req.NamespacedName)
			}
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("reading SinkTarget %s: %w", req.NamespacedName, err)
	}
	if !obj.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	helper := patch.NewHelper(obj, r.Client)
	oldReady := conditions.Get(obj, logsv1alpha1.ConditionReady).DeepCopy()
	defer func() {
		result, retErr = computeResult(obj, result.RequeueAfter, retErr)
		r.readyEvents.record(r.Recorder, obj, oldReady)
		if err := helper.Patch(ctx, obj); err != nil {
			retErr = kerrors.NewAggregate([]error{retErr, err})
		}
	}()

	obj.Status.Type = obj.Spec.Type()
	pol, err := policyFor(ctx, r.Client, obj.Namespace)
	if err != nil {
		return ctrl.Result{}, retry(logsv1alpha1.ReasonProgressing, "Reading the CapturePolicies", err)
	}
	obj.Status.Policy = policyName(pol)
	cfg, err := resolveSink(ctx, r.APIReader, obj, sinkRules{allowRawStdout: r.AllowRawStdout, allowInsecureSkipVerify: r.AllowInsecureSkipVerify, policy: pol, defaultSinkTypes: r.DefaultSinkTypes})
	var se *stallError
	if err != nil && !errors.As(err, &se) {
		err = retry(logsv1alpha1.ReasonProgressing, "Resolving the sink", err)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	r.checkDelivery(obj, cfg)
	return ctrl.Result{RequeueAfter: sinkRefreshInterval}, nil
}

// checkDelivery sets Ready from the probe and the pipelines' delivery
// numbers, once the configuration is known to be valid.
func (r *SinkTargetReconciler) checkDelivery(obj *logsv1alpha1.SinkTarget, cfg capture.SinkConfig) {
	var stats capture.SinkStats
	if r.Deliveries != nil {
		stats, _ = r.Deliveries.SinkStats(obj.Namespace, obj.Name)
	}
	if !stats.LastSuccess.IsZero() {
		t := metav1.NewTime(stats.LastSuccess.Truncate(time.Second))
		obj.Status.LastSuccessfulDelivery = &t
	}
	if r.probes != nil {
		ok, err := r.probes.result(client.ObjectKeyFromObject(obj), cfg, sinkRefreshInterval, time.Now())
		switch {
		case !ok:
			conditions.MarkUnknown(obj, logsv1alpha1.ConditionReady, logsv1alpha1.ReasonEndpointProbing,
				"The %s sink's configuration is valid; its endpoint is being probed.", obj.Status.Type)
			return
		case err != nil:
			obj.Status.LastError = err.Error()
			conditions.MarkFalse(obj, logsv1alpha1.ConditionReady, logsv1alpha1.ReasonEndpointUnreachable,
				"The %s sink's configuration is valid but its endpoint is not reachable: %v.", obj.Status.Type, err)
			return
		}
	}
	if !stats.LastRejected.IsZero() && stats.LastRejected.After(stats.LastSuccess) {
		obj.Status.LastError = stats.LastRejection
		conditions.MarkFalse(obj, logsv1alpha1.ConditionReady, logsv1alpha1.ReasonDeliveryRejected,
			"The %s sink's destination refused %d lines for good since the pipelines started (not retried; counted as dropped), the latest at %s: %s.",
			obj.Status.Type, stats.RejectedLines, stats.LastRejected.UTC().Format(time.RFC3339), stats.LastRejection)
		return
	}
	if !stats.FailingSince.IsZero() {
		obj.Status.LastError = stats.LastError
		conditions.MarkFalse(obj, logsv1alpha1.ConditionReady, logsv1alpha1.ReasonDeliveryFailing,
			"Sends to the %s sink fail since %s and are retried (%d failed attempts): %s.",
			obj.Status.Type, stats.FailingSince.UTC().Format(time.RFC3339), stats.FailedBatches, stats.LastError)
		return
	}
	conditions.MarkTrue(obj, logsv1alpha1.ConditionReady, logsv1alpha1.ReasonConfigurationValid,
		"The %s sink's configuration is valid, its %d referenced Secrets are resolved and its endpoint answers.",
		obj.Status.Type, len(secretNames(obj)))
}

// SetupWithManager registers the controller and its watches; SetupIndexes
// must have run on mgr.
func (r *SinkTargetReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		For(&logsv1alpha1.SinkTarget{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&logsv1alpha1.CapturePolicy{}, handler.EnqueueRequestsFromMapFunc(everyObject(r.Client, func() client.ObjectList { return &logsv1alpha1.SinkTargetList{} }))).
		WithOptions(controller.Options{MaxConcurrentReconciles: reconcileWorkers, NewQueue: namespaceFairQueue})
	if r.WatchSecrets {
		b = b.WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.sinksForSecret))
	}
	if r.Prober != nil {
		r.probes = newProbes(r.Prober)
		if err := mgr.Add(r.probes); err != nil {
			return fmt.Errorf("adding the SinkTarget probes: %w", err)
		}
		b = b.WatchesRawSource(source.Channel(r.probes.done, &handler.EnqueueRequestForObject{}))
	}
	return b.Complete(r) //nolint:wrapcheck // Setup names the controller
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
