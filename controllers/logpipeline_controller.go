package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/controllers/internal/conditions"
	"github.com/log-capturer/log-capturer/controllers/internal/patch"
	"github.com/log-capturer/log-capturer/controllers/internal/verdict"
)

// reconcileWorkers is how many objects of a kind reconcile at once, so that
// one pipeline's slow step (a drain on re-apply) does not hold the others.
const reconcileWorkers = 4

// Finalizer keeps a LogPipeline until its workers are stopped.
const Finalizer = "logs.capturer.dev/finalizer"

// Workers is the capture engine as the LogPipeline controller uses it.
type Workers interface {
	// Apply (re)configures a pipeline's workers; idempotent by config hash.
	Apply(ctx context.Context, key types.NamespacedName, cfg capture.PipelineConfig) error
	// Remove stops a pipeline's workers; removing an unknown pipeline is no error.
	Remove(ctx context.Context, key types.NamespacedName) error
	// Delete stops a deleted pipeline's workers and deletes its stored positions.
	Delete(ctx context.Context, key types.NamespacedName) error
	// Snapshot reports a pipeline's worker numbers.
	Snapshot(key types.NamespacedName) (capture.Snapshot, bool)
}

// LogPipelineReconciler turns LogPipelines into running capture workers.
type LogPipelineReconciler struct {
	client.Client
	// APIReader reads Secrets uncached, so that the operator never holds
	// every Secret of the cluster in memory.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Workers   Workers
	// SamplePeriod is how often a running pipeline's health is re-judged
	// and its numbers refreshed; 15s when zero.
	SamplePeriod time.Duration
	// MinRotation is the shortest rotation interval allowed; zero allows
	// what the schema allows.
	MinRotation time.Duration
	// AllowRawStdout lets Stdout sinks write lines unescaped.
	AllowRawStdout bool
	// AllowInsecureSkipVerify lets sinks skip verifying certificates.
	AllowInsecureSkipVerify bool
	// DefaultSinkTypes are the sink types of namespaces that no
	// CapturePolicy selects; empty allows every type.
	DefaultSinkTypes []logsv1alpha1.PolicySinkType
	// WatchSecrets watches Secrets' metadata cluster-wide (list and watch
	// rights) so that a change is seen at once.
	WatchSecrets bool

	readyEvents readyEvents
}

// +kubebuilder:rbac:groups=logs.capturer.dev,resources=logpipelines,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=logs.capturer.dev,resources=logpipelines/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=logs.capturer.dev,resources=logpipelines/finalizers,verbs=update
// +kubebuilder:rbac:groups=logs.capturer.dev,resources=sinktargets,verbs=get;list;watch
// +kubebuilder:rbac:groups=logs.capturer.dev,resources=capturepolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods/log,verbs=get
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// handOverPoll is how often a pipeline whose workers hand over (a new
// configuration, or a deletion) is looked at again.
const handOverPoll = time.Second

// Reconcile brings one LogPipeline's workers and status in line with its spec.
func (r *LogPipelineReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	obj := &logsv1alpha1.LogPipeline{}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			// Gone: whatever still runs for this key must stop too.
			r.readyEvents.forget(req.NamespacedName)
			return ctrl.Result{}, r.Workers.Remove(ctx, req.NamespacedName)
		}
		return ctrl.Result{}, fmt.Errorf("reading LogPipeline %s: %w", req.NamespacedName, err)
	}
	if err := r.persistFinalizer(ctx, obj); err != nil {
		return ctrl.Result{}, err
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

	if !obj.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, obj)
	}
	if obj.Spec.Suspend {
		return ctrl.Result{}, r.reconcileSuspend(ctx, obj)
	}
	return r.reconcileNormal(ctx, obj)
}

// persistFinalizer writes the finalizer of a live pipeline before any
// worker starts for it, so that its deletion always passes through
// reconcileDelete. A pipeline being deleted is left as it is.
func (r *LogPipelineReconciler) persistFinalizer(ctx context.Context, obj *logsv1alpha1.LogPipeline) error {
	if !obj.DeletionTimestamp.IsZero() || controllerutil.ContainsFinalizer(obj, Finalizer) {
		return nil
	}
	before := obj.DeepCopy()
	controllerutil.AddFinalizer(obj, Finalizer)
	if err := r.Patch(ctx, obj, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("adding the finalizer to LogPipeline %s/%s: %w", obj.Namespace, obj.Name, err)
	}
	return nil
}

func (r *LogPipelineReconciler) reconcileDelete(ctx context.Context, obj *logsv1alpha1.LogPipeline) error {
	if err := r.Workers.Delete(ctx, client.ObjectKeyFromObject(obj)); err != nil {
		if errors.Is(err, capture.ErrWorkersStopping) {
			return wait(logsv1alpha1.ReasonDeleting, handOverPoll,
				"The workers of the deleted pipeline drain their sinks and store their last positions (at most the drain timeout); the finalizer is removed once they stopped.")
		}
		return fmt.Errorf("stopping workers of deleted pipeline: %w", err)
	}
	controllerutil.RemoveFinalizer(obj, Finalizer)
	return nil
}

func (r *LogPipelineReconciler) reconcileSuspend(ctx context.Context, obj *logsv1alpha1.LogPipeline) error {
	if err := r.Workers.Remove(ctx, client.ObjectKeyFromObject(obj)); err != nil {
		return fmt.Errorf("stopping workers of suspended pipeline: %w", err)
	}
	obj.Status.Workers = nil
	msg := "The pipeline is suspended (spec.suspend is true); no worker runs."
	conditions.MarkFalse(obj, logsv1alpha1.ConditionReady, logsv1alpha1.ReasonSuspended, "%s", msg)
	conditions.MarkUnknown(obj, logsv1alpha1.ConditionWorkersHealthy, logsv1alpha1.ReasonSuspended, "%s", msg)
	conditions.MarkUnknown(obj, logsv1alpha1.ConditionFlowHealthy, logsv1alpha1.ReasonSuspended, "%s", msg)
	conditions.MarkUnknown(obj, logsv1alpha1.ConditionPositionsStored, logsv1alpha1.ReasonSuspended, "%s", msg)
	return nil
}

func (r *LogPipelineReconciler) reconcileNormal(ctx context.Context, obj *logsv1alpha1.LogPipeline) (ctrl.Result, error) {
	key := client.ObjectKeyFromObject(obj)
	sinks, pol, err := r.resolve(ctx, obj)
	if err != nil {
		return ctrl.Result{}, r.stopIfStalled(ctx, obj, err)
	}
	conditions.MarkTrue(obj, logsv1alpha1.ConditionSinksReady, logsv1alpha1.ReasonSinksResolved,
		"Every SinkTarget the pipeline names (%d) exists and its credentials are resolved.", len(sinks))
	if err := r.Workers.Apply(ctx, key, pipelineConfig(obj, sinks, pol)); err != nil {
		return ctrl.Result{}, retryNotReady(logsv1alpha1.ReasonApplyFailed, "Applying the worker configuration", err)
	}
	snap, _ := r.Workers.Snapshot(key)
	if snap.HandingOver {
		msg := "The new configuration waits for the previous workers to hand over: they drain their sinks (at most the drain timeout) and store their positions, and the new workers resume from there."
		conditions.MarkUnknown(obj, logsv1alpha1.ConditionReady, logsv1alpha1.ReasonHandingOver, "%s", msg)
		return ctrl.Result{}, wait(logsv1alpha1.ReasonHandingOver, handOverPoll, "%s", msg)
	}
	r.summarize(obj, snap, sinks, pol)
	return ctrl.Result{RequeueAfter: durationOr(r.SamplePeriod, 15*time.Second)}, nil
}

// resolve checks what the schema cannot and reads the namespace's
// CapturePolicy (nil when none applies) and every SinkTarget the pipeline
// names; a failure to read is retried, anything else stalls.
func (r *LogPipelineReconciler) resolve(ctx context.Context, obj *logsv1alpha1.LogPipeline) ([]capture.SinkConfig, *logsv1alpha1.CapturePolicy, error) {
	if err := validateSelector(obj); err != nil {
		return nil, nil, err
	}
	pol, err := policyFor(ctx, r.Client, obj.Namespace)
	if err != nil {
		return nil, nil, retry(logsv1alpha1.ReasonProgressing, "Reading the namespace's CapturePolicy", err)
	}
	obj.Status.Policy = policyName(pol)
	if err := validateLimits(obj, r.MinRotation, pol); err != nil {
		return nil, nil, err
	}
	sinks, err := r.resolveSinks(ctx, obj, pol)
	var se *stallError
	if err != nil && !errors.As(err, &se) {
		return nil, nil, retry(logsv1alpha1.ReasonProgressing, "Resolving the pipeline's sinks", err)
	}
	return sinks, pol, err
}

// summarize turns the workers' snapshot into status numbers, the health
// conditions and Ready.
func (r *LogPipelineReconciler) summarize(obj *logsv1alpha1.LogPipeline, snap capture.Snapshot, sinks []capture.SinkConfig, pol *logsv1alpha1.CapturePolicy) {
	moved := false
	if cur := workerStatus(snap, obj.Spec.Health.Window.Duration, time.Now()); meaningfulChange(obj.Status.Workers, cur) {
		obj.Status.Workers, moved = cur, true
	}
	budgets := make(map[string]time.Duration, len(sinks))
	for _, s := range sinks {
		budgets[s.Name] = s.MaxBackoff
	}
	h := obj.Spec.Health
	v := verdict.Evaluate(snap, verdict.Thresholds{
		MaxGoroutineGrowthPerMinute: float64(h.MaxGoroutineGrowthPerMinute),
		MaxFDGrowthPer10Minutes:     float64(h.MaxFDGrowthPer10Minutes),
		Window:                      h.Window.Duration,
		NoDeliveryTimeout:           h.NoDeliveryTimeout.Duration,
		RotationInterval:            obj.Spec.Rotation.Interval.Duration,
		RetryBudget:                 budgets,
		StreamLimitSource:           streamLimitSource(pol),
	}, time.Now())
	// A message restates the numbers: it is rewritten with them, or when
	// the verdict changes, so that noise in a slope causes no write.
	setVerdict := func(t string, c verdict.Condition) {
		if old := conditions.Get(obj, t); moved || old == nil || old.Status != c.Status || old.Reason != c.Reason {
			conditions.Set(obj, t, c.Status, c.Reason, "%s", c.Message)
		}
	}
	setVerdict(logsv1alpha1.ConditionWorkersHealthy, v.Workers)
	setVerdict(logsv1alpha1.ConditionFlowHealthy, v.Flow)
	setVerdict(logsv1alpha1.ConditionPositionsStored, v.Positions)
	switch {
	case v.NotWorking:
		c := v.Flow
		// No worker runs: Ready says why in the workers' words (not the
		// leader, stopped, or no node agent reporting).
		if v.Workers.Reason == logsv1alpha1.ReasonWorkersNotRunning ||
			v.Workers.Reason == logsv1alpha1.ReasonAgentsMissing && v.Flow.Reason == logsv1alpha1.ReasonWorkersNotRunning {
			c = v.Workers
		}
		setVerdict(logsv1alpha1.ConditionReady, verdict.Condition{Status: metav1.ConditionFalse, Reason: c.Reason, Message: c.Message})
	case v.Degraded:
		var parts []string
		for _, c := range []verdict.Condition{v.Workers, v.Flow, v.Positions} {
			if c.Status == metav1.ConditionFalse {
				parts = append(parts, c.Reason+": "+c.Message)
			}
		}
		setVerdict(logsv1alpha1.ConditionReady, verdict.Condition{Status: metav1.ConditionTrue, Reason: logsv1alpha1.ReasonDegraded,
			Message: "The pipeline delivers but is degraded. " + strings.Join(parts, " ")})
	default:
		msg := fmt.Sprintf("Workers run with %s; %d of %d selected containers are streaming, %d waiting for a slot.",
			plural(len(sinks), "sink", "sinks"), snap.ActiveStreams, snap.SelectedContainers, snap.WaitingStreams)
		if snap.Agents != nil {
			// Which reader serves how many: the node agents (files) or the
			// operator (the API).
			msg += fmt.Sprintf(" Node agents read %d of them from the kubelet's files, the operator %d through the API.",
				snap.FileContainers, max(snap.SelectedContainers-snap.FileContainers, 0))
		}
		setVerdict(logsv1alpha1.ConditionReady, verdict.Condition{Status: metav1.ConditionTrue, Reason: logsv1alpha1.ReasonWorkersRunning, Message: msg})
	}
}

// stopIfStalled stops the workers of a pipeline that cannot run until the
// user changes something, and marks its other conditions for that; err is
// returned as it is for computeResult.
func (r *LogPipelineReconciler) stopIfStalled(ctx context.Context, obj *logsv1alpha1.LogPipeline, err error) error {
	var se *stallError
	if !errors.As(err, &se) {
		return err
	}
	if rerr := r.Workers.Remove(ctx, client.ObjectKeyFromObject(obj)); rerr != nil {
		return fmt.Errorf("stopping workers of stalled pipeline: %w", rerr)
	}
	obj.Status.Workers = nil
	if se.reason != logsv1alpha1.ReasonInvalidSpec && se.reason != logsv1alpha1.ReasonOutsideOperatorLimits {
		conditions.MarkFalse(obj, logsv1alpha1.ConditionSinksReady, se.reason, "%s", se.message)
	}
	for _, t := range []string{logsv1alpha1.ConditionWorkersHealthy, logsv1alpha1.ConditionFlowHealthy, logsv1alpha1.ConditionPositionsStored} {
		conditions.MarkUnknown(obj, t, logsv1alpha1.ReasonWorkersNotRunning, "No worker runs: %s", se.message)
	}
	return err
}

// resolveSinks reads every SinkTarget the pipeline names, in order.
func (r *LogPipelineReconciler) resolveSinks(ctx context.Context, obj *logsv1alpha1.LogPipeline, pol *logsv1alpha1.CapturePolicy) ([]capture.SinkConfig, error) {
	out := make([]capture.SinkConfig, 0, len(obj.Spec.Sinks))
	var missing []string
	for _, name := range obj.Spec.Sinks {
		st := &logsv1alpha1.SinkTarget{}
		err := r.Get(ctx, types.NamespacedName{Namespace: obj.Namespace, Name: string(name)}, st)
		if apierrors.IsNotFound(err) {
			missing = append(missing, string(name))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading SinkTarget %s/%s: %w", obj.Namespace, name, err)
		}
		cfg, err := resolveSink(ctx, r.APIReader, st, sinkRules{allowRawStdout: r.AllowRawStdout, allowInsecureSkipVerify: r.AllowInsecureSkipVerify, policy: pol, defaultSinkTypes: r.DefaultSinkTypes})
		if err != nil {
			return nil, err
		}
		out = append(out, cfg)
	}
	if len(missing) > 0 {
		return nil, stall(logsv1alpha1.ReasonSinkNotFound, "%d of %d SinkTargets do not exist in namespace %q: %q.",
			len(missing), len(obj.Spec.Sinks), obj.Namespace, missing)
	}
	return out, nil
}

// SetupWithManager registers the controller and its watches; SetupIndexes
// must have run on mgr.
func (r *LogPipelineReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		For(&logsv1alpha1.LogPipeline{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, deletingPredicate()))).
		Watches(&logsv1alpha1.SinkTarget{}, handler.EnqueueRequestsFromMapFunc(r.pipelinesForSink)).
		Watches(&logsv1alpha1.CapturePolicy{}, handler.EnqueueRequestsFromMapFunc(everyObject(r.Client, func() client.ObjectList { return &logsv1alpha1.LogPipelineList{} }))).
		WithOptions(controller.Options{MaxConcurrentReconciles: reconcileWorkers, NewQueue: namespaceFairQueue})
	if r.WatchSecrets {
		// Without the watch, every reconcile (each sample period) reads the
		// Secrets again, and a stall on a Secret is looked at every 30s.
		b = b.WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.pipelinesForSecret))
	}
	return b.Complete(r) //nolint:wrapcheck // Setup names the controller
}

// pipelinesForSink maps a SinkTarget to the pipelines naming it.
func (r *LogPipelineReconciler) pipelinesForSink(ctx context.Context, o client.Object) []reconcile.Request {
	return pipelinesNaming(ctx, r.Client, o.GetNamespace(), []string{o.GetName()})
}

// pipelinesForSecret maps a Secret to the pipelines whose sinks reference it.
func (r *LogPipelineReconciler) pipelinesForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	sinks := &logsv1alpha1.SinkTargetList{}
	if err := r.List(ctx, sinks, client.InNamespace(o.GetNamespace()),
		client.MatchingFields{IndexSinkTargetSecret: o.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing SinkTargets for a Secret", "secret", client.ObjectKeyFromObject(o))
		return nil
	}
	names := make([]string, 0, len(sinks.Items))
	for i := range sinks.Items {
		names = append(names, sinks.Items[i].Name)
	}
	return pipelinesNaming(ctx, r.Client, o.GetNamespace(), names)
}
