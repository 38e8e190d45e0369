package controllers

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/controllers/internal/conditions"
)

// ReasonBatchRejected is the Event reason when a destination refuses a batch
// for good (a 4xx other than 429): the lines are counted as dropped.
const ReasonBatchRejected = "BatchRejected"

// maxEventNote is the longest note the API server accepts in an Event
// (events.k8s.io/v1 rejects longer ones, and the Event is lost).
const maxEventNote = 1024

// eventNote shortens s to fit an Event's note, cutting at a character
// boundary and marking the cut.
func eventNote(s string) string {
	if len(s) <= maxEventNote {
		return s
	}
	const mark = " …[truncated]"
	cut := maxEventNote - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// readyEvents emits an Event when an object's Ready condition changes
// status or reason. It remembers what it emitted last per object, so that
// a reconcile that reads an object the cache has not updated yet (and so
// sees the old Ready) does not emit the same transition twice.
type readyEvents struct {
	mu   sync.Mutex
	last map[types.NamespacedName]string
}

func (e *readyEvents) record(rec events.EventRecorder, obj conditions.Setter, old *metav1.Condition) {
	cur := conditions.Get(obj, logsv1alpha1.ConditionReady)
	if rec == nil || cur == nil || (old != nil && old.Status == cur.Status && old.Reason == cur.Reason) {
		return
	}
	if cur.Status == metav1.ConditionUnknown {
		return // not known yet (a probe under way): nothing to announce
	}
	key, state := client.ObjectKeyFromObject(obj), string(cur.Status)+"/"+cur.Reason
	e.mu.Lock()
	if e.last == nil {
		e.last = map[types.NamespacedName]string{}
	}
	seen := e.last[key] == state
	e.last[key] = state
	e.mu.Unlock()
	if seen {
		return
	}
	eventType := corev1.EventTypeNormal
	if cur.Status != metav1.ConditionTrue {
		eventType = corev1.EventTypeWarning
	}
	rec.Eventf(obj, nil, eventType, cur.Reason, "Reconcile", "%s", eventNote(cur.Message))
}

// forget drops what was remembered of a deleted object.
func (e *readyEvents) forget(key types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.last, key)
}

// rejectQueue bounds the rejections waiting for their Event.
const rejectQueue = 256

type rejection struct{ namespace, sink, message string }

// RejectRecorder turns the sinks' rejected batches into Warning Events on
// the SinkTarget, with the server's message. Record is called on a sink's
// send path and never blocks: it queues the rejection, and Start, a
// controller-runtime Runnable, emits the Events. When the queue is full the
// rejection gets no Event (its lines are counted as dropped all the same).
type RejectRecorder struct {
	rec    events.EventRecorder
	reader client.Reader
	queue  chan rejection
	// Unreported counts rejections that got no Event because the queue was full.
	unreported atomic.Int64
}

// NewRejectRecorder returns a RejectRecorder emitting through rec; reader
// (the manager's cache) finds the SinkTarget the Event is about.
func NewRejectRecorder(rec events.EventRecorder, reader client.Reader) *RejectRecorder {
	return &RejectRecorder{rec: rec, reader: reader, queue: make(chan rejection, rejectQueue)}
}

// Record queues the Event; pipeline is "<namespace>/<name>".
func (r *RejectRecorder) Record(pipeline, sink, message string) {
	ns, _, _ := strings.Cut(pipeline, "/")
	select {
	case r.queue <- rejection{namespace: ns, sink: sink, message: message}:
	default:
		r.unreported.Add(1)
	}
}

// Unreported is how many rejections got no Event because the queue was full.
func (r *RejectRecorder) Unreported() int64 { return r.unreported.Load() }

// Start emits the queued Events until ctx ends.
func (r *RejectRecorder) Start(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case x := <-r.queue:
			r.emit(ctx, x)
		}
	}
}

// NeedLeaderElection runs the recorder where the sinks run: on the leader.
func (r *RejectRecorder) NeedLeaderElection() bool { return true }

func (r *RejectRecorder) emit(ctx context.Context, x rejection) {
	st := &logsv1alpha1.SinkTarget{}
	if err := r.reader.Get(ctx, client.ObjectKey{Namespace: x.namespace, Name: x.sink}, st); err != nil {
		st.ObjectMeta = metav1.ObjectMeta{Namespace: x.namespace, Name: x.sink}
	}
	st.TypeMeta = metav1.TypeMeta{APIVersion: logsv1alpha1.GroupVersion.String(), Kind: "SinkTarget"}
	r.rec.Eventf(st, nil, corev1.EventTypeWarning, ReasonBatchRejected, "Deliver", "%s", eventNote(x.message))
}
