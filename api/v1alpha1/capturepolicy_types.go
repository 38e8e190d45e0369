package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
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
	NamespaceSelector LabelSelector `json:"namespaceSelector"`
	// SinkTypes are the sink types allowed. Stdout and File write into the
	// operator's own log and volume, so they are left out by default.
	// +optional
	// +kubebuilder:default={Loki,HTTP,OTLP,Kafka,Elasticsearch,OpenSearch,S3}
	// +kubebuilder:validation:MaxItems=9
	// +listType=set
	SinkTypes []PolicySinkType `json:"sinkTypes,omitempty"`
	// DestinationHosts are the hosts Loki, HTTP, OTLP, Elasticsearch, OpenSearch, S3 and Kafka sinks may
	// send to (for Kafka, the bootstrap brokers; the brokers they advertise
	// are held to destinationCIDRs only), as
	// globs where '*' matches one or more DNS labels' characters within a
	// label ("*.monitoring.svc", "loki.example.com"). Empty allows any host
	// (the operator's dial-time checks still apply).
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*\.)?[a-z0-9*]([-a-z0-9*]*[a-z0-9*])?(\.[a-z0-9*]([-a-z0-9*]*[a-z0-9*])?)*$`
	DestinationHosts []string `json:"destinationHosts,omitempty"`
	// DestinationCIDRs, when set, are the only address ranges Loki, HTTP,
	// OTLP, Elasticsearch, OpenSearch, S3 and Kafka sinks may connect to, checked when they connect, after DNS
	// resolution ("10.20.0.0/16", "2001:db8::/32"). The API server's and
	// the nodes' addresses, link-local ranges and cloud metadata addresses
	// are refused unless a range here contains them; loopback needs the
	// operator's --allow-loopback-egress as well. Empty allows any other
	// address.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +kubebuilder:validation:items:MaxLength=43
	// +kubebuilder:validation:XValidation:rule="self.all(c, isCIDR(c))",message="every entry must be an address range such as 10.0.0.0/8 or 2001:db8::/32"
	DestinationCIDRs []string `json:"destinationCIDRs,omitempty"`
	// LokiTenantIDs are the Loki tenant IDs (X-Scope-OrgID) allowed, as
	// globs; "{namespace}" stands for the SinkTarget's namespace, so
	// ["{namespace}"] keeps each namespace in its own Loki tenant. Empty
	// allows any.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +kubebuilder:validation:items:MaxLength=160
	// +kubebuilder:validation:items:Pattern=`^[a-zA-Z0-9!._*'()?{}-]+$`
	// +kubebuilder:validation:XValidation:rule="self.all(t, t != '.' && t != '..')",message="a tenant ID glob must not be '.' or '..'"
	LokiTenantIDs []string `json:"lokiTenantIDs,omitempty"`
	// AllowInsecureSkipVerify lets the selected namespaces' sinks skip
	// verifying the server's certificate (the operator's
	// --allow-insecure-skip-verify must allow it too).
	// +optional
	AllowInsecureSkipVerify bool `json:"allowInsecureSkipVerify,omitempty"`
	// Limits replace, for the selected namespaces, the operator's per-namespace
	// limits that its flags set for every namespace. The process-wide limits
	// (--memory-budget, --file-quota-total, --log-open-rate) still hold.
	// +optional
	Limits *PolicyLimits `json:"limits,omitempty"`
}

// PolicyLimits are per-namespace limits of a CapturePolicy; an unset field
// leaves the operator's flag in force.
type PolicyLimits struct {
	// MaxStreams bounds the log streams open at once over all pipelines of
	// one namespace (the operator's --max-streams-per-namespace otherwise);
	// more containers wait for a slot, which status reports.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	MaxStreams *int32 `json:"maxStreams,omitempty"`
	// MinRotationInterval is the shortest spec.rotation.interval a pipeline
	// may ask for (the operator's --min-rotation-interval otherwise): each
	// rotation reopens every selected container's log stream.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="limits.minRotationInterval must be between 1s and 24h"
	MinRotationInterval *metav1.Duration `json:"minRotationInterval,omitempty"`
	// MaxBufferBytes bounds spec.buffer.maxBytes of each SinkTarget.
	// +optional
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('1Ki')) >= 0 && quantity(string(self)).compareTo(quantity('1Gi')) <= 0",message="limits.maxBufferBytes must be between 1Ki and 1Gi"
	MaxBufferBytes *resource.Quantity `json:"maxBufferBytes,omitempty"`
	// FileQuota bounds what the File sinks of one namespace keep on disk,
	// maxSize × (maxFiles + 1) of each file (the operator's
	// --file-quota-per-namespace otherwise).
	// +optional
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('1Ki')) >= 0",message="limits.fileQuota must be at least 1Ki"
	FileQuota *resource.Quantity `json:"fileQuota,omitempty"`
}

// PolicySinkType is a sink type a policy allows.
// +kubebuilder:validation:Enum=Loki;File;HTTP;Stdout;OTLP;Kafka;Elasticsearch;OpenSearch;S3
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
