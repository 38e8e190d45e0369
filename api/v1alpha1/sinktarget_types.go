package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SinkType names the kind of a SinkTarget; status.type reports it.
type SinkType string

// AnnotationSinkTargets is the annotation by which a Secret consents to be
// used by SinkTargets of its namespace: a comma-separated list of their
// names, or "*" for all. A Secret without it is never read into a sink, so
// the right to create a SinkTarget is not the right to read Secrets.
const AnnotationSinkTargets = "logs.capturer.dev/sink-targets"

const (
	// SinkTypeLoki pushes to Grafana Loki.
	SinkTypeLoki SinkType = "Loki"
	// SinkTypeFile writes files under the operator's file sink root.
	SinkTypeFile SinkType = "File"
	// SinkTypeHTTP posts NDJSON to an HTTP endpoint.
	SinkTypeHTTP SinkType = "HTTP"
	// SinkTypeStdout writes to the operator's standard output.
	SinkTypeStdout SinkType = "Stdout"
	// SinkTypeOTLP exports to an OpenTelemetry (OTLP) logs endpoint.
	SinkTypeOTLP SinkType = "OTLP"
	// SinkTypeKafka produces to Kafka topics.
	SinkTypeKafka SinkType = "Kafka"
	// SinkTypeElasticsearch indexes into Elasticsearch with the bulk API.
	SinkTypeElasticsearch SinkType = "Elasticsearch"
	// SinkTypeOpenSearch indexes into OpenSearch with the bulk API.
	SinkTypeOpenSearch SinkType = "OpenSearch"
	// SinkTypeS3 writes objects to S3-compatible object storage.
	SinkTypeS3 SinkType = "S3"
)

// WhenFull is what a sink does when its buffer is full.
// +kubebuilder:validation:Enum=Block;DropOldest;DropNewest
type WhenFull string

const (
	// WhenFullBlock stops the pipeline's reading until there is room again; no line is lost.
	WhenFullBlock WhenFull = "Block"
	// WhenFullDropOldest drops the oldest buffered lines and counts them.
	WhenFullDropOldest WhenFull = "DropOldest"
	// WhenFullDropNewest drops incoming lines and counts them.
	WhenFullDropNewest WhenFull = "DropNewest"
)

// RecordFormat is how File and Stdout sinks write a record.
// +kubebuilder:validation:Enum=JSON;Raw
type RecordFormat string

const (
	// RecordFormatJSON writes one JSON object per line with the record's metadata.
	RecordFormatJSON RecordFormat = "JSON"
	// RecordFormatRaw writes the log line alone.
	RecordFormatRaw RecordFormat = "Raw"
)

// LokiEncoding is the body encoding of Loki pushes.
// +kubebuilder:validation:Enum=Protobuf;JSON
type LokiEncoding string

const (
	// LokiEncodingProtobuf sends snappy-compressed protobuf, Loki's native format.
	LokiEncodingProtobuf LokiEncoding = "Protobuf"
	// LokiEncodingJSON sends Loki's JSON push format.
	LokiEncodingJSON LokiEncoding = "JSON"
)

// MetadataLabel is Kubernetes metadata that can become a Loki stream label.
// +kubebuilder:validation:Enum=namespace;pod;container;node
type MetadataLabel string

// HTTPCompression is the body compression of HTTP sinks.
// +kubebuilder:validation:Enum=None;Gzip
type HTTPCompression string

const (
	// HTTPCompressionNone sends bodies as they are.
	HTTPCompressionNone HTTPCompression = "None"
	// HTTPCompressionGzip sends gzip-compressed bodies.
	HTTPCompressionGzip HTTPCompression = "Gzip"
)

// OTLPProtocol is the transport of an OTLP sink.
// +kubebuilder:validation:Enum=HTTPProtobuf;GRPC
type OTLPProtocol string

const (
	// OTLPProtocolHTTPProtobuf POSTs protobuf to <url>/v1/logs (OTLP/HTTP).
	OTLPProtocolHTTPProtobuf OTLPProtocol = "HTTPProtobuf"
	// OTLPProtocolGRPC calls the LogsService over gRPC (OTLP/gRPC).
	OTLPProtocolGRPC OTLPProtocol = "GRPC"
)

// KafkaKey chooses the message key, and so which records share a partition
// and keep their order.
// +kubebuilder:validation:Enum=Container;Pod;None
type KafkaKey string

const (
	// KafkaKeyContainer keys by namespace/pod/container: one container's
	// lines stay in order.
	KafkaKeyContainer KafkaKey = "Container"
	// KafkaKeyPod keys by namespace/pod: one pod's lines stay in order.
	KafkaKeyPod KafkaKey = "Pod"
	// KafkaKeyNone sends no key: records spread over partitions, without
	// order between them.
	KafkaKeyNone KafkaKey = "None"
)

// KafkaCompression is the compression of produced record batches.
// +kubebuilder:validation:Enum=None;Gzip;Snappy;LZ4;Zstd
type KafkaCompression string

// SASLMechanism is a Kafka SASL mechanism.
// +kubebuilder:validation:Enum=PLAIN;SCRAM-SHA-256;SCRAM-SHA-512
type SASLMechanism string

// SinkTargetSpec configures one destination for log lines. Exactly one of
// loki, file, http, stdout, otlp, kafka, elasticsearch, openSearch and s3
// is set.
// +kubebuilder:validation:XValidation:rule="[has(self.loki), has(self.file), has(self.http), has(self.stdout), has(self.otlp), has(self.kafka), has(self.elasticsearch), has(self.openSearch), has(self.s3)].filter(x, x).size() == 1",message="exactly one of loki, file, http, stdout, otlp, kafka, elasticsearch, openSearch or s3 must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.batch) || !has(self.batch.maxBytes) || !has(self.buffer) || !has(self.buffer.maxBytes) || quantity(string(self.batch.maxBytes)).compareTo(quantity(string(self.buffer.maxBytes))) <= 0",message="batch.maxBytes must not exceed buffer.maxBytes"
type SinkTargetSpec struct {
	// Loki pushes to a Loki-compatible endpoint.
	// +optional
	Loki *LokiSink `json:"loki,omitempty"`
	// File writes files under the operator's file sink root.
	// +optional
	File *FileSink `json:"file,omitempty"`
	// HTTP posts NDJSON to an HTTP endpoint.
	// +optional
	HTTP *HTTPSink `json:"http,omitempty"`
	// Stdout writes to the operator's standard output, for debugging.
	// +optional
	Stdout *StdoutSink `json:"stdout,omitempty"`
	// OTLP exports to an OpenTelemetry Protocol logs endpoint (a Collector
	// or any OTLP backend), over HTTP/protobuf or gRPC.
	// +optional
	OTLP *OTLPSink `json:"otlp,omitempty"`
	// Kafka produces every line as a JSON message to Kafka, acknowledged
	// by all in-sync replicas, with an idempotent producer.
	// +optional
	Kafka *KafkaSink `json:"kafka,omitempty"`
	// Elasticsearch indexes every line as a document with the bulk API,
	// into a data stream or an index.
	// +optional
	Elasticsearch *ElasticsearchSink `json:"elasticsearch,omitempty"`
	// OpenSearch indexes every line as a document with OpenSearch's bulk
	// API, into a data stream or an index.
	// +optional
	OpenSearch *OpenSearchSink `json:"openSearch,omitempty"`
	// S3 writes each batch as one gzip NDJSON object to S3-compatible
	// object storage.
	// +optional
	S3 *S3Sink `json:"s3,omitempty"`

	// Batch controls how lines are grouped into one send.
	// +optional
	// +kubebuilder:default={maxBytes:"1Mi",maxWait:"1s"}
	Batch BatchSpec `json:"batch,omitzero"`
	// Retry controls the backoff between failed sends.
	// +optional
	// +kubebuilder:default={minBackoff:"500ms",maxBackoff:"5m"}
	Retry RetrySpec `json:"retry,omitzero"`
	// Buffer bounds what is queued for this sink per pipeline.
	// +optional
	// +kubebuilder:default={maxBytes:"8Mi",whenFull:"Block"}
	Buffer BufferSpec `json:"buffer,omitzero"`
}

// URL is an absolute http or https URL with a host, without credentials
// (they go in auth, from a Secret) and without a fragment.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=2048
// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && size(url(self).getHost()) > 0",message="must be an absolute http or https URL"
// +kubebuilder:validation:XValidation:rule="!isURL(self) || size(url(self).getHostname()) > 0",message="must name a host (http://:PORT has none)"
// +kubebuilder:validation:XValidation:rule="!self.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@')",message="must not hold credentials (user:password@): put them in auth, from a Secret"
// +kubebuilder:validation:XValidation:rule="!self.contains('#')",message="must not have a fragment (#...): it is never sent"
// +kubebuilder:validation:XValidation:rule="!self.matches('[\\x00-\\x20\\x7f]')",message="must not contain spaces or control characters"
type URL string

// LokiSink pushes to Loki's /loki/api/v1/push.
// +kubebuilder:validation:XValidation:rule="!has(self.tls) || url(self.url).getScheme() == 'https'",message="tls needs an https URL: over http the credentials would go in clear"
type LokiSink struct {
	// URL is the Loki base URL, for example http://loki.monitoring:3100.
	URL URL `json:"url"`
	// TenantID is sent as X-Scope-OrgID.
	// +optional
	// +kubebuilder:validation:MaxLength=150
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9!._*'()-]+$`
	// +kubebuilder:validation:XValidation:rule="self != '.' && self != '..'",message="tenantID must not be '.' or '..', which Loki refuses (they name directories)"
	TenantID string `json:"tenantID,omitempty"`
	// Encoding of the push body.
	// +optional
	// +kubebuilder:default=Protobuf
	Encoding LokiEncoding `json:"encoding,omitempty"`
	// StaticLabels are added to every stream; at most 15, Loki's default
	// limit of label names per stream.
	// +optional
	// +kubebuilder:validation:MaxProperties=15
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^[a-zA-Z_][a-zA-Z0-9_]*$'))",message="static label names must match [a-zA-Z_][a-zA-Z0-9_]*"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['namespace', 'pod', 'container', 'node']))",message="static labels must not set namespace, pod, container or node: the operator sets them from the pod"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('__'))",message="static label names must not begin with '__', which Loki and Prometheus reserve"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 1024)",message="static label names must be at most 1024 characters (Loki's limit)"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(self[k]) <= 1024)",message="static label values must be at most 1024 bytes"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(self[k]) > 0)",message="static label values must not be empty (Loki drops an empty label)"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !self[k].matches('[\\x00-\\x1f\\x7f]'))",message="static label values must not contain control characters such as CR or LF"
	StaticLabels map[string]string `json:"staticLabels,omitempty"`
	// MetadataLabels are Kubernetes metadata that become stream labels. Pod
	// and node go to structured metadata unless listed here (cardinality).
	// +optional
	// +kubebuilder:default={namespace,container}
	// +kubebuilder:validation:MaxItems=4
	// +listType=set
	MetadataLabels []MetadataLabel `json:"metadataLabels,omitempty"`
	// PodLabelsAsLabels lists pod label keys that become stream labels.
	// +optional
	// +kubebuilder:default={app}
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=317
	// +listType=set
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['namespace', 'pod', 'container', 'node']))",message="podLabelsAsLabels must not name namespace, pod, container or node: the operator sets them from the pod"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) > 0 && size(k) <= 317)",message="pod label keys must be 1 to 317 characters"
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))",message="podLabelsAsLabels must be label keys: an optional DNS subdomain prefix and '/', then 1 to 63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit"
	PodLabelsAsLabels []string `json:"podLabelsAsLabels,omitempty"`
	// Auth authenticates to Loki.
	// +optional
	Auth *AuthSpec `json:"auth,omitempty"`
	// TLS configures the connection.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`
}

// FileSink writes log records to files under the operator's --file-sink-root.
type FileSink struct {
	// Path is relative to the namespace's directory under the operator's
	// file sink root (<root>/<namespace>/<path>) and may not leave it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/')",message="path must be relative to the operator's file sink root"
	// +kubebuilder:validation:XValidation:rule="!self.split('/').exists(s, s == '..' || s == '.')",message="path must not contain '.' or '..' segments"
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$')",message="path must be made of letters, digits, '.', '_' and '-' separated by single '/'"
	Path string `json:"path"`
	// Format of each written line.
	// +optional
	// +kubebuilder:default=JSON
	Format RecordFormat `json:"format,omitempty"`
	// MaxSize is the size at which the file is rotated. Between 1Ki and 10Gi.
	// +optional
	// +kubebuilder:default="100Mi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('1Ki')) >= 0",message="maxSize must be at least 1Ki"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('10Gi')) <= 0",message="maxSize must be at most 10Gi"
	MaxSize resource.Quantity `json:"maxSize,omitzero"`
	// MaxFiles is how many rotated files are kept.
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	MaxFiles int32 `json:"maxFiles,omitempty"`
	// Compress gzips rotated files.
	// +optional
	// +kubebuilder:default=true
	Compress *bool `json:"compress,omitempty"`
}

// HTTPSink posts NDJSON records to an HTTP endpoint.
// +kubebuilder:validation:XValidation:rule="!has(self.tls) || url(self.url).getScheme() == 'https'",message="tls needs an https URL: over http the credentials would go in clear"
type HTTPSink struct {
	// URL receives the POSTs.
	URL URL `json:"url"`
	// Headers are added to every request.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=name
	Headers []HTTPHeader `json:"headers,omitempty"`
	// Compression of the request body.
	// +optional
	// +kubebuilder:default=Gzip
	Compression HTTPCompression `json:"compression,omitempty"`
	// Auth authenticates to the endpoint.
	// +optional
	Auth *AuthSpec `json:"auth,omitempty"`
	// TLS configures the connection.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`
}

// HTTPHeader is one request header; its value is literal or from a Secret.
// +kubebuilder:validation:XValidation:rule="has(self.value) != has(self.valueFrom)",message="a header needs exactly one of value or valueFrom"
type HTTPHeader struct {
	// Name of the header.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[!#$%&'*+.^_|~0-9A-Za-z-]+$`
	// +kubebuilder:validation:XValidation:rule="!(self.lowerAscii() in ['authorization', 'host', 'content-type', 'content-encoding', 'content-length', 'transfer-encoding', 'connection'])",message="this header is set by the operator: use auth for credentials; Host, Content-Type, Content-Encoding, Content-Length, Transfer-Encoding and Connection cannot be set"
	Name string `json:"name"`
	// Value is the literal header value.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule="!self.matches('[\\x00-\\x08\\x0a-\\x1f\\x7f]')",message="a header value must not contain control characters such as CR or LF"
	Value *string `json:"value,omitempty"`
	// ValueFrom reads the value from a Secret.
	// +optional
	ValueFrom *SecretKeySelector `json:"valueFrom,omitempty"`
}

// OTLPSink exports records as OpenTelemetry log records: the line is the
// body, the container runtime's timestamp the time, and the pod's
// Kubernetes metadata the resource attributes of the semantic conventions
// (k8s.namespace.name, k8s.pod.name, k8s.container.name, k8s.node.name,
// k8s.pod.label.<key>).
// +kubebuilder:validation:XValidation:rule="!has(self.tls) || url(self.url).getScheme() == 'https'",message="tls needs an https URL: over http the credentials would go in clear"
// +kubebuilder:validation:XValidation:rule="!has(self.protocol) || self.protocol != 'GRPC' || (size(url(self.url).getEscapedPath()) <= 1 && !self.url.contains('?'))",message="a GRPC url is only scheme, host and port (https://otel-collector:4317): gRPC has no path or query"
// +kubebuilder:validation:XValidation:rule="!has(self.protocol) || self.protocol != 'GRPC' || !has(self.headers) || self.headers.all(h, h.name.matches('^[A-Za-z0-9_.-]+$') && !h.name.lowerAscii().startsWith('grpc-') && !h.name.lowerAscii().endsWith('-bin') && !(h.name.lowerAscii() in ['te', 'user-agent']))",message="GRPC headers (metadata) must be letters, digits, '_', '.' or '-', and not grpc-*, *-bin, te or user-agent, which gRPC reserves"
type OTLPSink struct {
	// URL is the endpoint's base URL. HTTPProtobuf posts to <url>/v1/logs
	// (http://otel-collector.monitoring:4318); GRPC takes scheme, host and
	// port only (http://otel-collector.monitoring:4317), where https means TLS.
	// +kubebuilder:validation:XValidation:rule="!self.matches('/v1/logs/?$')",message="url is the base URL: the sink appends /v1/logs itself"
	URL URL `json:"url"`
	// Protocol is HTTPProtobuf (OTLP/HTTP with binary protobuf) or GRPC.
	// +optional
	// +kubebuilder:default=HTTPProtobuf
	Protocol OTLPProtocol `json:"protocol,omitempty"`
	// Compression of each export request.
	// +optional
	// +kubebuilder:default=Gzip
	Compression HTTPCompression `json:"compression,omitempty"`
	// Headers are added to every request (gRPC metadata under GRPC).
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=name
	Headers []HTTPHeader `json:"headers,omitempty"`
	// ResourceAttributes are added to every record's resource, for example
	// k8s.cluster.name or service.namespace; at most 32, with string values.
	// The operator sets k8s.namespace.name, k8s.pod.name,
	// k8s.container.name, k8s.node.name and k8s.pod.label.* from the pod.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) > 0 && size(k) <= 255 && k.matches('^[A-Za-z0-9_.-]+$'))",message="resource attribute names must be 1 to 255 letters, digits, '_', '.' or '-'"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['k8s.namespace.name', 'k8s.pod.name', 'k8s.container.name', 'k8s.node.name']) && !k.startsWith('k8s.pod.label.'))",message="resource attributes must not set k8s.namespace.name, k8s.pod.name, k8s.container.name, k8s.node.name or k8s.pod.label.*: the operator sets them from the pod"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(self[k]) <= 4096)",message="resource attribute values must be at most 4096 bytes"
	ResourceAttributes map[string]string `json:"resourceAttributes,omitempty"`
	// Auth authenticates to the endpoint (the Authorization header or
	// gRPC metadata).
	// +optional
	Auth *AuthSpec `json:"auth,omitempty"`
	// TLS configures the connection.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`
}

// KafkaSink produces every record as one message: the JSON object the File
// sink writes (ts, namespace, pod, container, node, line, labels), with the
// container runtime's timestamp as the message timestamp. Messages are
// acknowledged by all in-sync replicas (acks=all) and produced idempotently,
// so the client's own retries do not duplicate them.
// +kubebuilder:validation:XValidation:rule="!has(self.sasl) || self.sasl.mechanism != 'PLAIN' || has(self.tls)",message="sasl.mechanism PLAIN needs tls: it sends the password in clear"
type KafkaSink struct {
	// Brokers are the bootstrap brokers, host:port; the client then talks
	// to the brokers the cluster advertises.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	// +kubebuilder:validation:items:MaxLength=261
	// +kubebuilder:validation:XValidation:rule="self.all(b, b.matches('^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?([.][a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*:[0-9]{1,5}$'))",message="brokers must be host:port, with a DNS name or an IPv4 address as the host"
	Brokers []string `json:"brokers"`
	// Topic is the topic name, where {namespace}, {pod} and {container}
	// stand for the record's; at most 249 characters once filled in, else
	// the line is rejected and counted.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=249
	// +kubebuilder:validation:XValidation:rule="self.matches('^([a-zA-Z0-9._-]|[{](namespace|pod|container)[}])+$')",message="topic must be made of letters, digits, '.', '_', '-' and the placeholders {namespace}, {pod} and {container}"
	// +kubebuilder:validation:XValidation:rule="self != '.' && self != '..'",message="topic must not be '.' or '..', which Kafka refuses"
	Topic string `json:"topic"`
	// Key chooses the message key: Container (namespace/pod/container, so
	// that one container's lines keep their order), Pod or None.
	// +optional
	// +kubebuilder:default=Container
	Key KafkaKey `json:"key,omitempty"`
	// Compression of the produced batches.
	// +optional
	// +kubebuilder:default=Snappy
	Compression KafkaCompression `json:"compression,omitempty"`
	// MaxMessageBytes is the largest message the sink produces, counted as
	// a record batch of that one record before compression (brokers count
	// after it, so the bound is conservative). The default is the brokers'
	// and topics' default (message.max.bytes, max.message.bytes: 1048588).
	// A record whose JSON would be larger has its line cut (at a UTF-8
	// boundary, ending in "…[truncated by log-capturer]") so that it fits,
	// and is counted as truncated; set it to the topic's max.message.bytes
	// when that is not the default. Between 4Ki and 64Mi.
	// +optional
	// +kubebuilder:default="1048588"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isInteger() && quantity(string(self)).compareTo(quantity('4Ki')) >= 0 && quantity(string(self)).compareTo(quantity('64Mi')) <= 0",message="maxMessageBytes must be a whole number of bytes between 4Ki and 64Mi"
	MaxMessageBytes resource.Quantity `json:"maxMessageBytes,omitzero"`
	// SASL authenticates to the brokers, with credentials from a Secret.
	// +optional
	SASL *KafkaSASL `json:"sasl,omitempty"`
	// TLS, when set, connects to the brokers over TLS.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`
}

// KafkaSASL is SASL authentication to Kafka.
type KafkaSASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism SASLMechanism `json:"mechanism"`
	// Username is read from a Secret.
	Username SecretKeySelector `json:"username"`
	// Password is read from a Secret.
	Password SecretKeySelector `json:"password"`
}

// ElasticsearchMode is how an Elasticsearch sink writes documents.
// +kubebuilder:validation:Enum=DataStream;Index
type ElasticsearchMode string

const (
	// ElasticsearchModeDataStream appends to a data stream (op create).
	ElasticsearchModeDataStream ElasticsearchMode = "DataStream"
	// ElasticsearchModeIndex indexes into an index (op create, ids chosen by
	// Elasticsearch).
	ElasticsearchModeIndex ElasticsearchMode = "Index"
)

// ElasticsearchSink indexes every record as one document with the bulk
// API: @timestamp (the container runtime's time), message (the line), and
// kubernetes.namespace, kubernetes.pod.name, kubernetes.container.name,
// kubernetes.node.name and kubernetes.labels.* as the Elastic Common Schema
// names them. Items the bulk API answers 429 (or 5xx) for are sent again,
// alone; items it refuses (400: a mapping conflict) are counted as rejected.
// +kubebuilder:validation:XValidation:rule="!has(self.tls) || url(self.url).getScheme() == 'https'",message="tls needs an https URL: over http the credentials would go in clear"
type ElasticsearchSink struct {
	// URL is the cluster's base URL, for example https://es.logging:9200.
	URL URL `json:"url"`
	// Mode is DataStream (default) or Index.
	// +optional
	// +kubebuilder:default=DataStream
	Mode ElasticsearchMode `json:"mode,omitempty"`
	// Index is the data stream or index name, where {namespace} stands for
	// the record's namespace and {date} for its day (2026.11.27, in UTC):
	// lowercase letters, digits, '.', '_', '-' and '+', not beginning with
	// '-', '_' or '+'.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:XValidation:rule="self.matches('^([a-z0-9._+-]|[{](namespace|date)[}])+$')",message="index must be made of lowercase letters, digits, '.', '_', '-', '+' and the placeholders {namespace} and {date}"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[-_+]') && self != '.' && self != '..'",message="index must not begin with '-', '_' or '+', nor be '.' or '..'"
	Index string `json:"index"`
	// Auth authenticates with basic auth or an API key, from Secrets.
	// +optional
	Auth *ElasticsearchAuth `json:"auth,omitempty"`
	// TLS configures the connection.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`
}

// ElasticsearchAuth is basic auth or an API key, from Secrets.
// +kubebuilder:validation:XValidation:rule="has(self.basic) != has(self.apiKey)",message="auth needs exactly one of basic or apiKey"
type ElasticsearchAuth struct {
	// Basic authentication.
	// +optional
	Basic *BasicAuth `json:"basic,omitempty"`
	// APIKey is the base64-encoded API key (id:api_key), sent as
	// "Authorization: ApiKey <key>".
	// +optional
	APIKey *SecretKeySelector `json:"apiKey,omitempty"`
}

// OpenSearchMode is how an OpenSearch sink writes documents.
// +kubebuilder:validation:Enum=DataStream;Index
type OpenSearchMode string

const (
	// OpenSearchModeDataStream appends to a data stream (op create).
	OpenSearchModeDataStream OpenSearchMode = "DataStream"
	// OpenSearchModeIndex indexes into an index (op create, ids chosen by
	// OpenSearch).
	OpenSearchModeIndex OpenSearchMode = "Index"
)

// OpenSearchSink indexes every record as one document with OpenSearch's
// bulk API, through the OpenSearch client (the Elasticsearch client refuses
// to talk to OpenSearch). The document is the Elasticsearch sink's:
// @timestamp, message, and kubernetes.namespace, kubernetes.pod.name,
// kubernetes.container.name, kubernetes.node.name and kubernetes.labels.*.
// Items the bulk API answers 429 (or 5xx) for are sent again, alone; items
// it refuses (400: a mapping conflict) are counted as rejected.
// +kubebuilder:validation:XValidation:rule="!has(self.tls) || url(self.url).getScheme() == 'https'",message="tls needs an https URL: over http the credentials would go in clear"
type OpenSearchSink struct {
	// URL is the cluster's base URL, for example
	// https://opensearch.logging:9200.
	URL URL `json:"url"`
	// Mode is DataStream (default) or Index.
	// +optional
	// +kubebuilder:default=DataStream
	Mode OpenSearchMode `json:"mode,omitempty"`
	// Index is the data stream or index name, where {namespace} stands for
	// the record's namespace and {date} for its day (2026.11.27, in UTC):
	// lowercase letters, digits, '.', '_', '-' and '+', not beginning with
	// '-', '_' or '+'.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:XValidation:rule="self.matches('^([a-z0-9._+-]|[{](namespace|date)[}])+$')",message="index must be made of lowercase letters, digits, '.', '_', '-', '+' and the placeholders {namespace} and {date}"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[-_+]') && self != '.' && self != '..'",message="index must not begin with '-', '_' or '+', nor be '.' or '..'"
	Index string `json:"index"`
	// Auth authenticates with basic auth (the security plugin's internal
	// users) or an API key, from Secrets.
	// +optional
	Auth *OpenSearchAuth `json:"auth,omitempty"`
	// TLS configures the connection.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`
}

// OpenSearchAuth is basic auth or an API key, from Secrets.
// +kubebuilder:validation:XValidation:rule="has(self.basic) != has(self.apiKey)",message="auth needs exactly one of basic or apiKey"
type OpenSearchAuth struct {
	// Basic authentication.
	// +optional
	Basic *BasicAuth `json:"basic,omitempty"`
	// APIKey is an API key of the security plugin (OpenSearch 3.7 and
	// later; the token as created, os_...), sent as
	// "Authorization: ApiKey <key>".
	// +optional
	APIKey *SecretKeySelector `json:"apiKey,omitempty"`
}

// S3Sink writes each batch (spec.batch: up to maxBytes of lines or maxWait,
// the object's size and time flush) as one object of NDJSON, the File
// sink's JSON lines, gzip-compressed unless compression is None. Objects are
// named <prefix>/<pipeline>/<yyyy>/<mm>/<dd>/<hh>/<unix-nanos>-<n>.ndjson.gz
// by the first line's time window (UTC); the batch is acknowledged when the
// PUT succeeded, and a retried PUT writes the same key again.
// +kubebuilder:validation:XValidation:rule="!has(self.tls) || url(self.endpoint).getScheme() == 'https'",message="tls needs an https endpoint: over http the credentials would go in clear"
// +kubebuilder:validation:XValidation:rule="has(self.accessKeyID) == has(self.secretAccessKey)",message="accessKeyID and secretAccessKey must be set together"
type S3Sink struct {
	// Endpoint is the service's URL without a path, for example
	// https://s3.eu-west-1.amazonaws.com or http://minio.storage:9000.
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || size(url(self).getEscapedPath()) <= 1",message="endpoint has no path: the bucket and key are the sink's"
	Endpoint URL `json:"endpoint"`
	// Bucket is the bucket's name (3 to 63 lowercase letters, digits, '.'
	// and '-').
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`
	Bucket string `json:"bucket"`
	// Region is the bucket's region.
	// +optional
	// +kubebuilder:default=us-east-1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[a-z0-9-]+$`
	Region string `json:"region,omitempty"`
	// Prefix begins every object's key; {namespace} and {pipeline} stand for
	// the pipeline's. Segments of letters, digits, '!', '-', '_', '.', '*',
	// '(' and ')', separated by single '/'.
	// +optional
	// +kubebuilder:default="logs/{namespace}"
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self == '' || self.matches('^([A-Za-z0-9!_.*()-]|[{](namespace|pipeline)[}])+(/([A-Za-z0-9!_.*()-]|[{](namespace|pipeline)[}])+)*$')",message="prefix must be segments of letters, digits, '!', '-', '_', '.', '*', '(', ')' and the placeholders {namespace} and {pipeline}, separated by single '/', without a leading or trailing '/'"
	// +kubebuilder:validation:XValidation:rule="!self.split('/').exists(s, s == '.' || s == '..')",message="prefix must not have '.' or '..' segments"
	Prefix string `json:"prefix,omitempty"`
	// PathStyle addresses the bucket in the path (endpoint/bucket/key), as
	// MinIO and most S3-compatible stores need, instead of as a virtual
	// host (bucket.endpoint).
	// +optional
	PathStyle bool `json:"pathStyle,omitempty"`
	// Compression of each object.
	// +optional
	// +kubebuilder:default=Gzip
	Compression HTTPCompression `json:"compression,omitempty"`
	// AccessKeyID is read from a Secret; without it requests are anonymous.
	// +optional
	AccessKeyID *SecretKeySelector `json:"accessKeyID,omitempty"`
	// SecretAccessKey is read from a Secret.
	// +optional
	SecretAccessKey *SecretKeySelector `json:"secretAccessKey,omitempty"`
	// TLS configures the connection.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`
}

// StdoutSink writes records to the operator's standard output.
type StdoutSink struct {
	// Format of each written line.
	// +optional
	// +kubebuilder:default=JSON
	Format RecordFormat `json:"format,omitempty"`
}

// AuthSpec authenticates with basic auth or a bearer token, from Secrets.
// +kubebuilder:validation:XValidation:rule="has(self.basic) != has(self.bearerToken)",message="auth needs exactly one of basic or bearerToken"
type AuthSpec struct {
	// Basic authentication.
	// +optional
	Basic *BasicAuth `json:"basic,omitempty"`
	// BearerToken is sent as "Authorization: Bearer <token>".
	// +optional
	BearerToken *SecretKeySelector `json:"bearerToken,omitempty"`
}

// BasicAuth holds references to a username and password.
type BasicAuth struct {
	// Username is read from a Secret.
	Username SecretKeySelector `json:"username"`
	// Password is read from a Secret.
	Password SecretKeySelector `json:"password"`
}

// TLSSpec configures TLS to a sink.
// +kubebuilder:validation:XValidation:rule="has(self.cert) == has(self.key)",message="tls.cert and tls.key must be set together"
type TLSSpec struct {
	// CA is a PEM bundle of certificate authorities to trust instead of the system's.
	// +optional
	CA *SecretKeySelector `json:"ca,omitempty"`
	// Cert is a PEM client certificate.
	// +optional
	Cert *SecretKeySelector `json:"cert,omitempty"`
	// Key is the PEM private key of Cert.
	// +optional
	Key *SecretKeySelector `json:"key,omitempty"`
	// ServerName overrides the name the server certificate is checked against.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*$`
	ServerName string `json:"serverName,omitempty"`
	// InsecureSkipVerify disables certificate verification. Only for tests.
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// BatchSpec controls batching.
type BatchSpec struct {
	// MaxBytes is the largest batch, in bytes of log lines.
	// +optional
	// +kubebuilder:default="1Mi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('1Ki')) >= 0 && quantity(string(self)).compareTo(quantity('64Mi')) <= 0",message="batch.maxBytes must be between 1Ki and 64Mi"
	MaxBytes resource.Quantity `json:"maxBytes,omitzero"`
	// MaxWait is the longest a line waits for its batch to fill.
	// +optional
	// +kubebuilder:default="1s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10ms') && duration(self) <= duration('1m')",message="batch.maxWait must be between 10ms and 1m"
	MaxWait metav1.Duration `json:"maxWait,omitzero"`
}

// RetrySpec controls exponential backoff with jitter between failed sends.
// +kubebuilder:validation:XValidation:rule="!has(self.minBackoff) || !has(self.maxBackoff) || duration(self.minBackoff) <= duration(self.maxBackoff)",message="retry.minBackoff must not exceed retry.maxBackoff"
type RetrySpec struct {
	// MinBackoff is the first wait after a failure.
	// +optional
	// +kubebuilder:default="500ms"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10ms') && duration(self) <= duration('1h')",message="retry.minBackoff must be between 10ms and 1h"
	MinBackoff metav1.Duration `json:"minBackoff,omitzero"`
	// MaxBackoff caps the wait between retries.
	// +optional
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10ms') && duration(self) <= duration('1h')",message="retry.maxBackoff must be between 10ms and 1h"
	MaxBackoff metav1.Duration `json:"maxBackoff,omitzero"`
}

// BufferSpec bounds the per-pipeline queue of a sink.
type BufferSpec struct {
	// MaxBytes is the most memory the records queued for this sink per
	// pipeline may take: each counts its line plus about 288 bytes of
	// bookkeeping, so that the bound is what the queue costs.
	// +optional
	// +kubebuilder:default="8Mi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('1Ki')) >= 0 && quantity(string(self)).compareTo(quantity('1Gi')) <= 0",message="buffer.maxBytes must be between 1Ki and 1Gi"
	MaxBytes resource.Quantity `json:"maxBytes,omitzero"`
	// WhenFull is what happens when the buffer is full.
	// +optional
	// +kubebuilder:default=Block
	WhenFull WhenFull `json:"whenFull,omitempty"`
}

// SinkTargetStatus is the observed state of a SinkTarget.
type SinkTargetStatus struct {
	// ObservedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Type is the kind of sink: Loki, File, HTTP, Stdout, OTLP, Kafka,
	// Elasticsearch, OpenSearch or S3.
	// +optional
	Type SinkType `json:"type,omitempty"`
	// Policy is the CapturePolicy that applies to the SinkTarget's namespace;
	// empty when none does.
	// +optional
	Policy string `json:"policy,omitempty"`
	// Conditions: Ready, and Reconciling or Stalled while they are True.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
	// LastError is the last delivery or probe error, without credentials.
	// +optional
	LastError string `json:"lastError,omitempty"`
	// LastSuccessfulDelivery is when a pipeline last delivered a batch here.
	// +optional
	LastSuccessfulDelivery *metav1.Time `json:"lastSuccessfulDelivery,omitempty"`
}

// SinkTarget is a destination for log lines that LogPipelines of the same
// namespace name in spec.sinks.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=st,categories=logging
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.status.type`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Policy",type=string,JSONPath=`.status.policy`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SinkTarget struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SinkTargetSpec   `json:"spec"`
	Status SinkTargetStatus `json:"status,omitempty"`
}

// GetConditions returns the sink's status conditions.
func (s *SinkTarget) GetConditions() []metav1.Condition { return s.Status.Conditions }

// SetConditions replaces the sink's status conditions.
func (s *SinkTarget) SetConditions(c []metav1.Condition) { s.Status.Conditions = c }

// Type tells which kind of sink the spec configures, or "" when none is set.
func (s *SinkTargetSpec) Type() SinkType {
	switch {
	case s.Loki != nil:
		return SinkTypeLoki
	case s.File != nil:
		return SinkTypeFile
	case s.HTTP != nil:
		return SinkTypeHTTP
	case s.Stdout != nil:
		return SinkTypeStdout
	case s.OTLP != nil:
		return SinkTypeOTLP
	case s.Kafka != nil:
		return SinkTypeKafka
	case s.Elasticsearch != nil:
		return SinkTypeElasticsearch
	case s.OpenSearch != nil:
		return SinkTypeOpenSearch
	case s.S3 != nil:
		return SinkTypeS3
	}
	return ""
}

// SinkTargetList is a list of SinkTargets.
// +kubebuilder:object:root=true
type SinkTargetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SinkTarget `json:"items"`
}
