package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CapturePolicySpec says what the SinkTargets of the namespaces it selects
// may do. Only cluster admins write CapturePolicies (they are
// cluster-scoped); tenants read which one applies to them in their
// SinkTargets' status.
type CapturePolicySpec struct {
	// NamespaceSelector selects the namespaces the policy applies to by
	// their labels; {} selects every namespace. When several policies select
	// a namespace, the one whose name sorts first applies.
	NamespaceSelector metav1.LabelSelector `json:"namespaceSelector"`
	// SinkTypes are the sink types allowed. Stdout and File write into the
	// operator's own log and volume, so they are left out by default.
	// +optional
	// +kubebuilder:default={Loki,HTTP}
	// +kubebuilder:validation:MaxItems=4
	// +listType=set
	SinkTypes []PolicySinkType `json:"sinkTypes,omitempty"`
	// DestinationHosts are the hosts Loki and HTTP sinks may send to, as
	// globs where '*' matches one or more DNS labels' characters within a
	// label ("*.monitoring.svc", "loki.example.com"). Empty allows any host
	// (the operator's dial-time checks still apply).
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*\.)?[a-z0-9*]([-a-z0-9*]*[a-z0-9*])?(\.[a-z0-9*]([-a-z0-9*]*[a-z0-9*])?)*$`
	DestinationHosts []string `json:"destinationHosts,omitempty"`
	// LokiTenantIDs are the Loki tenant IDs (X-Scope-OrgID) allowed, as
	// globs; "{namespace}" stands for the SinkTarget's namespace, so
	// ["{namespace}"] keeps each namespace in its own Loki tenant. Empty
	// allows any.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +kubebuilder:validation:items:MaxLength=160
	LokiTenantIDs []string `json:"lokiTenantIDs,omitempty"`
	// AllowInsecureSkipVerify lets the selected namespaces' sinks skip
	// verifying the server's certificate (the operator's
	// --allow-insecure-skip-verify must allow it too).
	// +optional
	AllowInsecureSkipVerify bool `json:"allowInsecureSkipVerify,omitempty"`
}

// PolicySinkType is a sink type a policy allows.
// +kubebuilder:validation:Enum=Loki;File;HTTP;Stdout
type PolicySinkType string

// CapturePolicy is an admin's rule for the SinkTargets of the namespaces it
// selects: which sink types, destinations and Loki tenants they may use.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=cpol,categories=logging
// +kubebuilder:printcolumn:name="Sink types",type=string,JSONPath=`.spec.sinkTypes`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type CapturePolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec CapturePolicySpec `json:"spec"`
}

// CapturePolicyList is a list of CapturePolicies.
// +kubebuilder:object:root=true
type CapturePolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CapturePolicy `json:"items"`
}
