// Package v1alpha1 contains the LogPipeline, SinkTarget and CapturePolicy API of the
// logs.capturer.dev group: the types, their defaults and validation rules, and
// the condition types and reasons the controllers write.
//
// +kubebuilder:object:generate=true
// +groupName=logs.capturer.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "logs.capturer.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this API with a scheme.
	SchemeBuilder = k8sruntime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this API to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *k8sruntime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&LogPipeline{}, &LogPipelineList{},
		&SinkTarget{}, &SinkTargetList{},
		&CapturePolicy{}, &CapturePolicyList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
