// Package conditions sets kstatus-style conditions on objects that expose
// their metav1.Conditions. Reconciling and Stalled exist only while True.
package conditions

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Setter is an object whose status has conditions.
type Setter interface {
	client.Object
	GetConditions() []metav1.Condition
	SetConditions([]metav1.Condition)
}

// Set sets a condition on obj with the object's generation. The transition
// time only changes when the status does.
func Set(obj Setter, condType string, status metav1.ConditionStatus, reason, format string, args ...any) {
	conds := obj.GetConditions()
	meta.SetStatusCondition(&conds, metav1.Condition{
		Type:               condType,
		Status:             status,
		Reason:             reason,
		Message:            fmt.Sprintf(format, args...),
		ObservedGeneration: obj.GetGeneration(),
	})
	obj.SetConditions(conds)
}

// MarkTrue sets condType True.
func MarkTrue(obj Setter, condType, reason, format string, args ...any) {
	Set(obj, condType, metav1.ConditionTrue, reason, format, args...)
}

// MarkFalse sets condType False.
func MarkFalse(obj Setter, condType, reason, format string, args ...any) {
	Set(obj, condType, metav1.ConditionFalse, reason, format, args...)
}

// MarkUnknown sets condType Unknown.
func MarkUnknown(obj Setter, condType, reason, format string, args ...any) {
	Set(obj, condType, metav1.ConditionUnknown, reason, format, args...)
}

// Delete removes condType.
func Delete(obj Setter, condType string) {
	conds := obj.GetConditions()
	meta.RemoveStatusCondition(&conds, condType)
	obj.SetConditions(conds)
}

// Get returns condType, or nil.
func Get(obj Setter, condType string) *metav1.Condition {
	return meta.FindStatusCondition(obj.GetConditions(), condType)
}
