package controllers

import (
	"errors"
	"fmt"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/controllers/internal/conditions"
)

// stallError is a problem only a change by the user can fix. It stalls the
// object with its reason and message instead of being retried.
type stallError struct {
	reason  string
	message string
	// recheck, when set, looks again after that long: for a stall that a
	// change the controller does not watch can lift (a Secret's).
	recheck time.Duration
}

func (e *stallError) Error() string { return e.message }

// stall returns a stallError; the message is a sentence for status.
func stall(reason, format string, args ...any) error {
	return &stallError{reason: reason, message: fmt.Sprintf(format, args...)}
}

// stallRecheck is how often a pipeline or SinkTarget stalled on what no
// watch reports looks at it again: Secrets (unless --watch-secrets) and
// namespace labels (which pick the CapturePolicy).
const stallRecheck = 30 * time.Second

// stallRechecked is stall for a problem that a change to an unwatched
// object can lift, looked at again after stallRecheck.
func stallRechecked(reason, format string, args ...any) error {
	return &stallError{reason: reason, message: fmt.Sprintf(format, args...), recheck: stallRecheck}
}

// retryError is a problem that may pass by itself: the reconcile is
// retried with backoff while Reconciling says why. notReady also sets
// Ready=False, for a failure that leaves the object not working.
type retryError struct {
	reason   string
	message  string
	notReady bool
	err      error
}

func (e *retryError) Error() string { return e.message }
func (e *retryError) Unwrap() error { return e.err }

// retry wraps err as a retryError that leaves Ready as it is, with the
// message "<what> failed and is retried: <err>.".
func retry(reason, what string, err error) error {
	return newRetry(reason, what, err, false)
}

// retryNotReady is retry for a failure that makes the object not Ready.
func retryNotReady(reason, what string, err error) error {
	return newRetry(reason, what, err, true)
}

func newRetry(reason, what string, err error, notReady bool) *retryError {
	return &retryError{reason: reason, message: fmt.Sprintf("%s failed and is retried: %v.", what, err), err: err, notReady: notReady}
}

// waitError is a step that is under way and needs no retry with backoff:
// the reconcile ends with Reconciling=True saying what it waits for, and
// comes back after the given time.
type waitError struct {
	reason  string
	message string
	after   time.Duration
}

func (e *waitError) Error() string { return e.message }

// wait returns a waitError; the message is a sentence for status.
func wait(reason string, after time.Duration, format string, args ...any) error {
	return &waitError{reason: reason, message: fmt.Sprintf(format, args...), after: after}
}

// statusObject is an object whose status has conditions and an observed generation.
type statusObject interface {
	conditions.Setter
	SetObservedGeneration(int64)
}

// computeResult is the one place that turns what a reconcile's steps
// returned into the kstatus conditions (Ready, Reconciling, Stalled), the
// observed generation and the result:
//   - a stallError stalls the object and ends the reconcile without a retry;
//   - a waitError marks it Reconciling with its reason and requeues after
//     its time, without an error;
//   - any other error marks it Reconciling (a retryError with its reason)
//     and is returned, so that controller-runtime retries with backoff;
//   - nil clears Reconciling and Stalled and requeues after requeueAfter.
//
// Ready itself is set by the steps on success, by this function on failure.
func computeResult(obj statusObject, requeueAfter time.Duration, err error) (ctrl.Result, error) {
	obj.SetObservedGeneration(obj.GetGeneration())
	var se *stallError
	if errors.As(err, &se) {
		conditions.MarkFalse(obj, logsv1alpha1.ConditionReady, se.reason, "%s", se.message)
		conditions.MarkTrue(obj, logsv1alpha1.ConditionStalled, se.reason, "%s", se.message)
		conditions.Delete(obj, logsv1alpha1.ConditionReconciling)
		return ctrl.Result{RequeueAfter: se.recheck}, nil
	}
	var we *waitError
	if errors.As(err, &we) {
		conditions.MarkTrue(obj, logsv1alpha1.ConditionReconciling, we.reason, "%s", we.message)
		conditions.Delete(obj, logsv1alpha1.ConditionStalled)
		return ctrl.Result{RequeueAfter: we.after}, nil
	}
	if err != nil {
		re := &retryError{reason: logsv1alpha1.ReasonProgressing, message: fmt.Sprintf("Reconciling failed and is retried: %v.", err)}
		errors.As(err, &re)
		if re.notReady {
			conditions.MarkFalse(obj, logsv1alpha1.ConditionReady, re.reason, "%s", re.message)
		}
		conditions.MarkTrue(obj, logsv1alpha1.ConditionReconciling, re.reason, "%s", re.message)
		conditions.Delete(obj, logsv1alpha1.ConditionStalled)
		return ctrl.Result{}, err
	}
	conditions.Delete(obj, logsv1alpha1.ConditionReconciling)
	conditions.Delete(obj, logsv1alpha1.ConditionStalled)
	return ctrl.Result{RequeueAfter: requeueAfter}, nil
}
