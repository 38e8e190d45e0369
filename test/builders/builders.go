// Package builders builds LogPipeline, SinkTarget and Secret objects for tests.
package builders

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
)

// PipelineBuilder builds a LogPipeline.
type PipelineBuilder struct{ obj *logsv1alpha1.LogPipeline }

// Pipeline starts a LogPipeline with the given sinks.
func Pipeline(namespace, name string, sinks ...string) *PipelineBuilder {
	p := &logsv1alpha1.LogPipeline{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	for _, s := range sinks {
		p.Spec.Sinks = append(p.Spec.Sinks, logsv1alpha1.SinkName(s))
	}
	return &PipelineBuilder{obj: p}
}

// WithSelector selects pods with these labels.
func (b *PipelineBuilder) WithSelector(labels map[string]string) *PipelineBuilder {
	b.obj.Spec.Selector = logsv1alpha1.SelectorFromMap(labels)
	return b
}

// WithSuspend sets spec.suspend.
func (b *PipelineBuilder) WithSuspend(s bool) *PipelineBuilder {
	b.obj.Spec.Suspend = s
	return b
}

// With applies any change to the object.
func (b *PipelineBuilder) With(f func(*logsv1alpha1.LogPipeline)) *PipelineBuilder {
	f(b.obj)
	return b
}

// Build returns the LogPipeline.
func (b *PipelineBuilder) Build() *logsv1alpha1.LogPipeline { return b.obj.DeepCopy() }

// SinkBuilder builds a SinkTarget.
type SinkBuilder struct{ obj *logsv1alpha1.SinkTarget }

// Sink starts a SinkTarget with no sink type set.
func Sink(namespace, name string) *SinkBuilder {
	return &SinkBuilder{obj: &logsv1alpha1.SinkTarget{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}}
}

// Loki makes it a Loki sink.
func (b *SinkBuilder) Loki(url string) *SinkBuilder {
	b.obj.Spec.Loki = &logsv1alpha1.LokiSink{URL: logsv1alpha1.URL(url)}
	return b
}

// File makes it a File sink.
func (b *SinkBuilder) File(path string) *SinkBuilder {
	b.obj.Spec.File = &logsv1alpha1.FileSink{Path: path}
	return b
}

// HTTP makes it an HTTP sink.
func (b *SinkBuilder) HTTP(url string) *SinkBuilder {
	b.obj.Spec.HTTP = &logsv1alpha1.HTTPSink{URL: logsv1alpha1.URL(url)}
	return b
}

// OTLP makes it an OTLP sink (HTTP/protobuf unless changed).
func (b *SinkBuilder) OTLP(url string) *SinkBuilder {
	b.obj.Spec.OTLP = &logsv1alpha1.OTLPSink{URL: logsv1alpha1.URL(url)}
	return b
}

// Kafka makes it a Kafka sink producing to topic.
func (b *SinkBuilder) Kafka(topic string, brokers ...string) *SinkBuilder {
	b.obj.Spec.Kafka = &logsv1alpha1.KafkaSink{Brokers: brokers, Topic: topic}
	return b
}

// Elasticsearch makes it an Elasticsearch sink writing to a data stream.
func (b *SinkBuilder) Elasticsearch(url, index string) *SinkBuilder {
	b.obj.Spec.Elasticsearch = &logsv1alpha1.ElasticsearchSink{URL: logsv1alpha1.URL(url), Index: index}
	return b
}

// OpenSearch makes it an OpenSearch sink writing to a data stream.
func (b *SinkBuilder) OpenSearch(url, index string) *SinkBuilder {
	b.obj.Spec.OpenSearch = &logsv1alpha1.OpenSearchSink{URL: logsv1alpha1.URL(url), Index: index}
	return b
}

// S3 makes it an S3 sink.
func (b *SinkBuilder) S3(endpoint, bucket string) *SinkBuilder {
	b.obj.Spec.S3 = &logsv1alpha1.S3Sink{Endpoint: logsv1alpha1.URL(endpoint), Bucket: bucket}
	return b
}

// Stdout makes it a Stdout sink.
func (b *SinkBuilder) Stdout() *SinkBuilder {
	b.obj.Spec.Stdout = &logsv1alpha1.StdoutSink{}
	return b
}

// WithBearerToken authenticates a Loki, HTTP or OTLP sink with a token from a Secret.
func (b *SinkBuilder) WithBearerToken(secret, key string) *SinkBuilder {
	auth := &logsv1alpha1.AuthSpec{BearerToken: &logsv1alpha1.SecretKeySelector{Name: secret, Key: key}}
	if b.obj.Spec.Loki != nil {
		b.obj.Spec.Loki.Auth = auth
	}
	if b.obj.Spec.HTTP != nil {
		b.obj.Spec.HTTP.Auth = auth
	}
	if b.obj.Spec.OTLP != nil {
		b.obj.Spec.OTLP.Auth = auth
	}
	return b
}

// With applies any change to the object.
func (b *SinkBuilder) With(f func(*logsv1alpha1.SinkTarget)) *SinkBuilder {
	f(b.obj)
	return b
}

// Build returns the SinkTarget.
func (b *SinkBuilder) Build() *logsv1alpha1.SinkTarget { return b.obj.DeepCopy() }

// Secret returns an Opaque Secret with string data that every SinkTarget of
// its namespace may use (logs.capturer.dev/sink-targets: "*"); PrivateSecret
// is one that none may.
func Secret(namespace, name string, data map[string]string) *corev1.Secret {
	s := PrivateSecret(namespace, name, data)
	s.Annotations = map[string]string{logsv1alpha1.AnnotationSinkTargets: "*"}
	return s
}

// PrivateSecret returns an Opaque Secret with string data and no consent
// annotation: no SinkTarget may use it.
func PrivateSecret(namespace, name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}
