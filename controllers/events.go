package controllers

import (
	"context"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
)

// ReasonBatchRejected is the Event reason when a destination refuses a batch
// for good (a 4xx other than 429): the lines are counted as dropped.
const ReasonBatchRejected = "BatchRejected"

// RejectRecorder turns the sinks' rejected batches into Warning Events on
// the SinkTarget, with the server's message.
type RejectRecorder struct {
	rec    events.EventRecorder
	reader client.Reader
}

// NewRejectRecorder returns a RejectRecorder emitting through rec; reader
// finds the SinkTarget the Event is about.
func NewRejectRecorder(rec events.EventRecorder, reader client.Reader) *RejectRecorder {
	return &RejectRecorder{rec: rec, reader: reader}
}

// Record emits the Event; pipeline is "<namespace>/<name>".
func (r *RejectRecorder) Record(pipeline, sink, message string) {
	ns, _, _ := strings.Cut(pipeline, "/")
	st := &logsv1alpha1.SinkTarget{}
	if err := r.reader.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: sink}, st); err != nil {
		st.ObjectMeta = metav1.ObjectMeta{Namespace: ns, Name: sink}
	}
	st.TypeMeta = metav1.TypeMeta{APIVersion: logsv1alpha1.GroupVersion.String(), Kind: "SinkTarget"}
	r.rec.Eventf(st, nil, corev1.EventTypeWarning, ReasonBatchRejected, "Deliver", "%s", message)
}
