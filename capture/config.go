package capture

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PipelineConfig is everything the workers of one pipeline need, with every
// reference (SinkTargets, Secrets) already resolved.
type PipelineConfig struct {
	// Namespace is the only namespace the pipeline reads.
	Namespace string `json:"namespace"`
	// Name is the pipeline's name.
	Name string `json:"name"`
	// UID is the pipeline's UID; the stored positions are owned by it.
	UID string `json:"uid,omitempty"`
	// PositionsInterval is how often changed positions are stored (5s when
	// zero); PositionsRetention how long positions of containers no longer
	// selected are kept (1h when zero).
	PositionsInterval  time.Duration `json:"positionsInterval,omitempty"`
	PositionsRetention time.Duration `json:"positionsRetention,omitempty"`
	// Selector selects pods; nil selects every pod of the namespace.
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// Include and Exclude are container name globs.
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
	// RotationInterval is how often each stream is closed and reopened.
	RotationInterval time.Duration `json:"rotationInterval"`
	// MaxStreams bounds the concurrently open streams.
	MaxStreams int `json:"maxStreams"`
	// NamespaceMaxStreams, when above zero, replaces the operator's limit of
	// streams open at once over all pipelines of the namespace (an admin
	// policy's); every pipeline of a namespace carries the same.
	NamespaceMaxStreams int `json:"namespaceMaxStreams,omitempty"`
	// StartFromBeginning reads a new container's whole log instead of only new lines.
	StartFromBeginning bool `json:"startFromBeginning,omitempty"`
	// Resume are positions handed over by the previous reader of some
	// containers (the API engine, when their node's agent took them over):
	// a container resumes from its own stored position or from this one,
	// whichever is further.
	Resume []ContainerPosition `json:"resume,omitempty"`
	// MaxLineBytes is the longest line text kept; longer lines are cut and
	// marked (1 MiB when zero).
	MaxLineBytes int `json:"maxLineBytes,omitempty"`
	// PodLabels are pod label keys copied into every record.
	PodLabels []string `json:"podLabels,omitempty"`
	// Sinks receive every line, in the order of the pipeline's spec.
	Sinks []SinkConfig `json:"sinks"`
	// HealthWindow is how long the health sampler keeps samples.
	HealthWindow time.Duration `json:"healthWindow,omitempty"`
}

// SinkKind is the type of a sink.
type SinkKind string

// Sink kinds.
const (
	SinkLoki   SinkKind = "Loki"
	SinkFile   SinkKind = "File"
	SinkHTTP   SinkKind = "HTTP"
	SinkStdout SinkKind = "Stdout"
	SinkOTLP   SinkKind = "OTLP"
	SinkKafka  SinkKind = "Kafka"
	// SinkElasticsearch indexes with the bulk API.
	SinkElasticsearch SinkKind = "Elasticsearch"
	// SinkOpenSearch indexes with OpenSearch's bulk API.
	SinkOpenSearch SinkKind = "OpenSearch"
	// SinkS3 writes objects to S3-compatible object storage.
	SinkS3 SinkKind = "S3"
)

// SinkConfig is one resolved sink of a pipeline.
type SinkConfig struct {
	// Name is the SinkTarget's name.
	Name string `json:"name"`
	// Kind selects which of the type-specific fields is set.
	Kind SinkKind `json:"kind"`
	// Generation of the SinkTarget this was resolved from.
	Generation int64 `json:"generation"`
	// Namespace is the SinkTarget's (and its pipelines') namespace: File
	// sinks write under a directory of that name.
	Namespace string `json:"namespace,omitempty"`

	Loki   *LokiConfig   `json:"loki,omitempty"`
	File   *FileConfig   `json:"file,omitempty"`
	HTTP   *HTTPConfig   `json:"http,omitempty"`
	Stdout *StdoutConfig `json:"stdout,omitempty"`
	OTLP   *OTLPConfig   `json:"otlp,omitempty"`
	Kafka  *KafkaConfig  `json:"kafka,omitempty"`
	// Elasticsearch configures an Elasticsearch sink.
	Elasticsearch *ElasticsearchConfig `json:"elasticsearch,omitempty"`
	// OpenSearch configures an OpenSearch sink: the fields of an
	// Elasticsearch sink (APIKey is an OpenSearch API key).
	OpenSearch *ElasticsearchConfig `json:"openSearch,omitempty"`
	// S3 configures an S3 sink.
	S3 *S3Config `json:"s3,omitempty"`

	// BatchMaxBytes and BatchMaxWait bound a batch.
	BatchMaxBytes int64         `json:"batchMaxBytes"`
	BatchMaxWait  time.Duration `json:"batchMaxWait"`
	// MinBackoff and MaxBackoff bound the retry backoff.
	MinBackoff time.Duration `json:"minBackoff"`
	MaxBackoff time.Duration `json:"maxBackoff"`
	// BufferMaxBytes bounds the queue; WhenFull is Block, DropOldest or DropNewest.
	BufferMaxBytes int64  `json:"bufferMaxBytes"`
	WhenFull       string `json:"whenFull"`
	// Egress is what the admin's policy lets the sink connect to, nil
	// when no policy applies.
	Egress *EgressPolicy `json:"egress,omitempty"`
}

// EgressPolicy is the part of a CapturePolicy that is checked when a sink
// connects, after DNS resolution.
type EgressPolicy struct {
	// Policy is the CapturePolicy's name, for messages.
	Policy string `json:"policy"`
	// AllowCIDRs, when not empty, are the only address ranges the sink may
	// connect to; an address in them may be the API server's or a node's.
	AllowCIDRs []string `json:"allowCIDRs,omitempty"`
}

// Credentials are resolved secret values. They never appear in logs,
// status or events; String redacts them.
type Credentials struct {
	Username    string `json:"username,omitempty"`
	Password    string `json:"password,omitempty"`
	BearerToken string `json:"bearerToken,omitempty"`
}

// String redacts the credentials so that they cannot be logged by accident.
func (Credentials) String() string { return "[redacted]" }

// TLSConfig holds resolved PEM material.
type TLSConfig struct {
	CAPEM              []byte `json:"caPEM,omitempty"`
	CertPEM            []byte `json:"certPEM,omitempty"`
	KeyPEM             []byte `json:"keyPEM,omitempty"`
	ServerName         string `json:"serverName,omitempty"`
	InsecureSkipVerify bool   `json:"insecureSkipVerify,omitempty"`
}

// LokiConfig configures a Loki sink.
type LokiConfig struct {
	URL               string            `json:"url"`
	TenantID          string            `json:"tenantID,omitempty"`
	JSON              bool              `json:"json,omitempty"`
	StaticLabels      map[string]string `json:"staticLabels,omitempty"`
	MetadataLabels    []string          `json:"metadataLabels,omitempty"`
	PodLabelsAsLabels []string          `json:"podLabelsAsLabels,omitempty"`
	Credentials       Credentials       `json:"credentials"`
	TLS               *TLSConfig        `json:"tls,omitempty"`
}

// FileConfig configures a File sink. Path is relative to the file sink root.
type FileConfig struct {
	Path     string `json:"path"`
	Raw      bool   `json:"raw,omitempty"`
	MaxSize  int64  `json:"maxSize"`
	MaxFiles int    `json:"maxFiles"`
	Compress bool   `json:"compress"`
	// NamespaceQuota, when above zero, replaces the operator's disk quota
	// of the namespace's File sinks; QuotaPolicy names the CapturePolicy
	// that sets it.
	NamespaceQuota int64  `json:"namespaceQuota,omitempty"`
	QuotaPolicy    string `json:"quotaPolicy,omitempty"`
}

// HTTPConfig configures an HTTP sink. Header values are resolved.
type HTTPConfig struct {
	URL         string            `json:"url"`
	Headers     map[string]string `json:"headers,omitempty"`
	Gzip        bool              `json:"gzip,omitempty"`
	Credentials Credentials       `json:"credentials"`
	TLS         *TLSConfig        `json:"tls,omitempty"`
}

// OTLPConfig configures an OTLP sink. Header values are resolved.
type OTLPConfig struct {
	// URL is the base URL: HTTP posts to URL + "/v1/logs"; gRPC dials its
	// host and port, with TLS when the scheme is https.
	URL string `json:"url"`
	// GRPC selects OTLP/gRPC instead of OTLP/HTTP with protobuf.
	GRPC bool `json:"grpc,omitempty"`
	Gzip bool `json:"gzip,omitempty"`
	// Headers are HTTP headers, or gRPC metadata.
	Headers map[string]string `json:"headers,omitempty"`
	// ResourceAttributes are added to every resource, beside the ones
	// the sink sets from the pod.
	ResourceAttributes map[string]string `json:"resourceAttributes,omitempty"`
	Credentials        Credentials       `json:"credentials"`
	TLS                *TLSConfig        `json:"tls,omitempty"`
}

// KafkaConfig configures a Kafka sink.
type KafkaConfig struct {
	Brokers []string `json:"brokers"`
	// Topic may hold {namespace}, {pod} and {container}.
	Topic string `json:"topic"`
	// Key is Container, Pod or None.
	Key string `json:"key,omitempty"`
	// Compression is None, Gzip, Snappy, LZ4 or Zstd.
	Compression string `json:"compression,omitempty"`
	// MaxMessageBytes bounds a message as Kafka counts a record batch
	// before compression; longer lines are cut to fit. Zero is Kafka's
	// default, 1048588.
	MaxMessageBytes int64 `json:"maxMessageBytes,omitempty"`
	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, with the
	// username and password of Credentials; empty for none.
	SASLMechanism string      `json:"saslMechanism,omitempty"`
	Credentials   Credentials `json:"credentials"`
	// TLS, when not nil, connects over TLS.
	TLS *TLSConfig `json:"tls,omitempty"`
}

// ElasticsearchConfig configures an Elasticsearch sink.
type ElasticsearchConfig struct {
	URL string `json:"url"`
	// Index may hold {namespace} and {date}.
	Index string `json:"index"`
	// DataStream tells the index is a data stream.
	DataStream bool `json:"dataStream,omitempty"`
	// Credentials are basic auth's, or APIKey.
	Credentials Credentials `json:"credentials"`
	APIKey      string      `json:"apiKey,omitempty"`
	TLS         *TLSConfig  `json:"tls,omitempty"`
}

// S3Config configures an S3 sink. Credentials' Username is the access key
// ID and Password the secret access key.
type S3Config struct {
	Endpoint string `json:"endpoint"`
	Bucket   string `json:"bucket"`
	Region   string `json:"region,omitempty"`
	// Prefix may hold {namespace} and {pipeline}.
	Prefix      string      `json:"prefix,omitempty"`
	PathStyle   bool        `json:"pathStyle,omitempty"`
	Gzip        bool        `json:"gzip,omitempty"`
	Credentials Credentials `json:"credentials"`
	TLS         *TLSConfig  `json:"tls,omitempty"`
}

// StdoutConfig configures a Stdout sink.
type StdoutConfig struct {
	Raw bool `json:"raw,omitempty"`
}

// Hash returns a stable digest of the whole configuration, secrets included,
// so that a rotated credential changes it too.
func (c *PipelineConfig) Hash() (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("hashing pipeline config %s/%s: %w", c.Namespace, c.Name, err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// LokiLabelName is the Loki label a pod label key becomes: every character
// outside [a-zA-Z0-9_] (and a leading digit) turns into '_'.
func LokiLabelName(k string) string {
	var b strings.Builder
	for i, r := range k {
		switch {
		case r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}
