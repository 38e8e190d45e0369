package controllers

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
)

// ReasonBatchRejected is the Event reason when a destination refuses a batch
// for good (a 4xx other than 429): the lines are counted as dropped.
const ReasonBatchRejected = "BatchRejected"

// RejectRecorder turns the sinks' rejected batches into Warning Events on
// the SinkTarget, with the server's message.
type RejectRecorder struct {
	rec events.EventRecorder
}

// NewRejectRecorder returns a RejectRecorder emitting through rec.
func NewRejectRecorder(rec events.EventRecorder) *RejectRecorder { return &RejectRecorder{rec: rec} }

// Record emits the Event; pipeline is "<namespace>/<name>".
func (r *RejectRecorder) Record(pipeline, sink, message string) {
	ns, _, _ := strings.Cut(pipeline, "/")
	st := &logsv1alpha1.SinkTarget{
		TypeMeta:   metav1.TypeMeta{APIVersion: logsv1alpha1.GroupVersion.String(), Kind: "SinkTarget"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sink},
	}
	r.rec.Eventf(st, nil, corev1.EventTypeWarning, ReasonBatchRejected, "Deliver", "%s", message)
}
