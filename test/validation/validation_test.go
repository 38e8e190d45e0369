package validation_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/log-capturer/log-capturer/agent/identity"
	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/test/envtestutil"
)

// object parses one YAML manifest into an unstructured object, as kubectl would send it.
func object(manifest string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	ExpectWithOffset(1, yaml.Unmarshal([]byte(manifest), &u.Object)).To(Succeed())
	return u
}

func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "validation-"}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

const pipelineHead = `apiVersion: logs.capturer.dev/v1alpha1
kind: LogPipeline
metadata:
  name: p
spec:
`

const sinkHead = `apiVersion: logs.capturer.dev/v1alpha1
kind: SinkTarget
metadata:
  name: s
spec:
`

var _ = Describe("Invalid manifests", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	DescribeTable("are rejected with a readable message",
		func(manifest, want string) {
			u := object(manifest)
			u.SetNamespace(ns)
			err := k8sClient.Create(ctx, u)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(want))
		},
		Entry("pipeline without sinks", pipelineHead+"  selector: {}\n", "spec.sinks: Required value"),
		Entry("pipeline with an empty sink list", pipelineHead+"  sinks: []\n", "should have at least 1 items"),
		Entry("pipeline with nine sinks", pipelineHead+"  sinks: [a, b, c, d, e, f, g, h, i]\n", "must have at most 8 items"),
		Entry("pipeline naming a sink twice", pipelineHead+"  sinks: [loki, file, loki]\n", "sink names must be unique"),
		Entry("pipeline with an invalid sink name", pipelineHead+"  sinks: [Bad_Name]\n", "spec.sinks[0]: Invalid value"),
		Entry("line size over 16Mi", pipelineHead+"  sinks: [a]\n  lines: {maxSize: 32Mi}\n", "lines.maxSize must be between 1Ki and 16Mi"),
		Entry("line size under 1Ki", pipelineHead+"  sinks: [a]\n  lines: {maxSize: 100}\n", "lines.maxSize must be between 1Ki and 16Mi"),
		Entry("rotation under one second", pipelineHead+"  sinks: [a]\n  rotation: {interval: 500ms}\n", "rotation.interval must be between 1s and 24h"),
		Entry("rotation that is not a duration", pipelineHead+"  sinks: [a]\n  rotation: {interval: soon}\n", "spec.rotation.interval: Invalid value"),
		Entry("stream pool of zero", pipelineHead+"  sinks: [a]\n  streamPool: {maxStreams: 0}\n", "should be greater than or equal to 1"),
		Entry("stream pool over 10000", pipelineHead+"  sinks: [a]\n  streamPool: {maxStreams: 10001}\n", "should be less than or equal to 10000"),
		Entry("unknown startAt", pipelineHead+"  sinks: [a]\n  startAt: Yesterday\n", `Unsupported value: "Yesterday"`),
		Entry("container glob with invalid characters", pipelineHead+"  sinks: [a]\n  containers: {include: ['Web_*']}\n", "a container glob may contain only lowercase letters, digits, '-', '*' and '?'"),
		Entry("container both included and excluded", pipelineHead+"  sinks: [a]\n  containers: {include: [web, 'side*'], exclude: ['side*']}\n", "a container glob must not be both included and excluded"),
		Entry("health window under a minute", pipelineHead+"  sinks: [a]\n  health: {window: 10s}\n", "health.window must be between 1m and 24h"),
		Entry("goroutine threshold of zero", pipelineHead+"  sinks: [a]\n  health: {maxGoroutineGrowthPerMinute: 0}\n", "should be greater than or equal to 1"),
		Entry("float in the API", pipelineHead+"  sinks: [a]\n  health: {maxGoroutineGrowthPerMinute: 1.5}\n", "spec.health.maxGoroutineGrowthPerMinute"),
		Entry("sink with no type", sinkHead+"  batch: {maxWait: 2s}\n", "exactly one of loki, file, http, stdout, otlp, kafka, elasticsearch, openSearch or s3 must be set"),
		Entry("sink with two types", sinkHead+"  stdout: {}\n  file: {path: x.log}\n", "exactly one of loki, file, http, stdout, otlp, kafka, elasticsearch, openSearch or s3 must be set"),
		Entry("sink with otlp and http", sinkHead+"  otlp: {url: 'https://otel.example'}\n  http: {url: 'https://x.example'}\n", "exactly one of loki, file, http, stdout, otlp, kafka, elasticsearch, openSearch or s3 must be set"),
		Entry("tls on an http OTLP URL", sinkHead+"  otlp: {url: 'http://otel.example:4318', tls: {insecureSkipVerify: true}}\n", "tls needs an https URL"),
		Entry("OTLP URL naming /v1/logs", sinkHead+"  otlp: {url: 'https://otel.example:4318/v1/logs'}\n", "url is the base URL: the sink appends /v1/logs itself"),
		Entry("OTLP gRPC URL with a path", sinkHead+"  otlp: {url: 'https://otel.example:4317/otlp', protocol: GRPC}\n", "a GRPC url is only scheme, host and port"),
		Entry("OTLP gRPC URL with a query", sinkHead+"  otlp: {url: 'https://otel.example:4317?x=1', protocol: GRPC}\n", "a GRPC url is only scheme, host and port"),
		Entry("unknown OTLP protocol", sinkHead+"  otlp: {url: 'https://otel.example', protocol: Thrift}\n", `Unsupported value: "Thrift"`),
		Entry("OTLP gRPC header gRPC reserves", sinkHead+"  otlp:\n    url: https://otel.example:4317\n    protocol: GRPC\n    headers: [{name: grpc-timeout, value: 1S}]\n", "GRPC headers (metadata) must be letters, digits"),
		Entry("OTLP gRPC header with a character metadata refuses", sinkHead+"  otlp:\n    url: https://otel.example:4317\n    protocol: GRPC\n    headers: [{name: 'X$Key', value: a}]\n", "GRPC headers (metadata) must be letters, digits"),
		Entry("OTLP header set by the operator", sinkHead+"  otlp:\n    url: https://otel.example\n    headers: [{name: Content-Encoding, value: br}]\n", "this header is set by the operator"),
		Entry("OTLP resource attribute the operator sets", sinkHead+"  otlp:\n    url: https://otel.example\n    resourceAttributes: {k8s.pod.name: forged}\n", "resource attributes must not set k8s.namespace.name, k8s.pod.name"),
		Entry("OTLP resource attribute posing as a pod label", sinkHead+"  otlp:\n    url: https://otel.example\n    resourceAttributes: {k8s.pod.label.app: forged}\n", "resource attributes must not set k8s.namespace.name"),
		Entry("OTLP resource attribute with a space", sinkHead+"  otlp:\n    url: https://otel.example\n    resourceAttributes: {'bad key': x}\n", "resource attribute names must be 1 to 255 letters"),
		Entry("OTLP resource attribute value over 4096 bytes", sinkHead+"  otlp:\n    url: https://otel.example\n    resourceAttributes: {team: "+strings.Repeat("v", 4097)+"}\n", "resource attribute values must be at most 4096 bytes"),
		Entry("OTLP credentials in the URL", sinkHead+"  otlp: {url: 'https://u:p@otel.example'}\n", "must not hold credentials"),
		Entry("sink with kafka and otlp", sinkHead+"  kafka: {brokers: ['k:9092'], topic: logs}\n  otlp: {url: 'https://otel.example'}\n", "exactly one of loki, file, http, stdout, otlp, kafka, elasticsearch, openSearch or s3 must be set"),
		Entry("kafka without brokers", sinkHead+"  kafka: {brokers: [], topic: logs}\n", "should have at least 1 items"),
		Entry("kafka broker without a port", sinkHead+"  kafka: {brokers: ['kafka.example'], topic: logs}\n", "brokers must be host:port"),
		Entry("kafka broker as a URL", sinkHead+"  kafka: {brokers: ['kafka://k:9092'], topic: logs}\n", "brokers must be host:port"),
		Entry("kafka topic with a space", sinkHead+"  kafka: {brokers: ['k:9092'], topic: 'my logs'}\n", "topic must be made of letters, digits"),
		Entry("kafka topic with an unknown placeholder", sinkHead+"  kafka: {brokers: ['k:9092'], topic: 'logs-{cluster}'}\n", "the placeholders {namespace}, {pod} and {container}"),
		Entry("kafka topic '..'", sinkHead+"  kafka: {brokers: ['k:9092'], topic: '..'}\n", "topic must not be '.' or '..'"),
		Entry("kafka topic over 249 characters", sinkHead+"  kafka: {brokers: ['k:9092'], topic: "+strings.Repeat("t", 250)+"}\n", "spec.kafka.topic"),
		Entry("kafka unknown key", sinkHead+"  kafka: {brokers: ['k:9092'], topic: logs, key: Node}\n", `Unsupported value: "Node"`),
		Entry("kafka unknown compression", sinkHead+"  kafka: {brokers: ['k:9092'], topic: logs, compression: Brotli}\n", `Unsupported value: "Brotli"`),
		Entry("kafka maxMessageBytes under 4Ki", sinkHead+"  kafka: {brokers: ['k:9092'], topic: logs, maxMessageBytes: 1000}\n", "maxMessageBytes must be a whole number of bytes between 4Ki and 64Mi"),
		Entry("kafka maxMessageBytes over 64Mi", sinkHead+"  kafka: {brokers: ['k:9092'], topic: logs, maxMessageBytes: 100Mi}\n", "maxMessageBytes must be a whole number of bytes between 4Ki and 64Mi"),
		Entry("kafka maxMessageBytes not a whole number", sinkHead+"  kafka: {brokers: ['k:9092'], topic: logs, maxMessageBytes: 1048588500m}\n", "maxMessageBytes must be a whole number of bytes between 4Ki and 64Mi"),
		Entry("kafka maxMessageBytes that is not a quantity", sinkHead+"  kafka: {brokers: ['k:9092'], topic: logs, maxMessageBytes: big}\n", "spec.kafka.maxMessageBytes"),
		Entry("kafka SASL PLAIN without TLS", sinkHead+"  kafka:\n    brokers: ['k:9092']\n    topic: logs\n    sasl: {mechanism: PLAIN, username: {name: s, key: u}, password: {name: s, key: p}}\n", "sasl.mechanism PLAIN needs tls"),
		Entry("kafka unknown SASL mechanism", sinkHead+"  kafka:\n    brokers: ['k:9092']\n    topic: logs\n    tls: {}\n    sasl: {mechanism: GSSAPI, username: {name: s, key: u}, password: {name: s, key: p}}\n", `Unsupported value: "GSSAPI"`),
		Entry("elasticsearch tls on an http URL", sinkHead+"  elasticsearch: {url: 'http://es:9200', index: logs, tls: {insecureSkipVerify: true}}\n", "tls needs an https URL"),
		Entry("elasticsearch index in upper case", sinkHead+"  elasticsearch: {url: 'https://es:9200', index: Logs}\n", "index must be made of lowercase letters"),
		Entry("elasticsearch index with an unknown placeholder", sinkHead+"  elasticsearch: {url: 'https://es:9200', index: 'logs-{pod}'}\n", "the placeholders {namespace} and {date}"),
		Entry("elasticsearch index beginning with '_'", sinkHead+"  elasticsearch: {url: 'https://es:9200', index: _logs}\n", "index must not begin with '-', '_' or '+'"),
		Entry("elasticsearch unknown mode", sinkHead+"  elasticsearch: {url: 'https://es:9200', index: logs, mode: Alias}\n", `Unsupported value: "Alias"`),
		Entry("elasticsearch both basic auth and an API key", sinkHead+"  elasticsearch:\n    url: https://es:9200\n    index: logs\n    auth: {apiKey: {name: s, key: k}, basic: {username: {name: s, key: u}, password: {name: s, key: p}}}\n", "auth needs exactly one of basic or apiKey"),
		Entry("sink with openSearch and elasticsearch", sinkHead+"  openSearch: {url: 'https://os:9200', index: logs}\n  elasticsearch: {url: 'https://es:9200', index: logs}\n", "exactly one of loki, file, http, stdout, otlp, kafka, elasticsearch, openSearch or s3 must be set"),
		Entry("openSearch without a URL", sinkHead+"  openSearch: {index: logs}\n", "spec.openSearch.url: Required value"),
		Entry("openSearch without an index", sinkHead+"  openSearch: {url: 'https://os:9200'}\n", "spec.openSearch.index: Required value"),
		Entry("openSearch URL with credentials", sinkHead+"  openSearch: {url: 'https://admin:admin@os:9200', index: logs}\n", "must not hold credentials"),
		Entry("openSearch tls on an http URL", sinkHead+"  openSearch: {url: 'http://os:9200', index: logs, tls: {insecureSkipVerify: true}}\n", "tls needs an https URL"),
		Entry("openSearch index in upper case", sinkHead+"  openSearch: {url: 'https://os:9200', index: Logs}\n", "index must be made of lowercase letters"),
		Entry("openSearch index with an unknown placeholder", sinkHead+"  openSearch: {url: 'https://os:9200', index: 'logs-{pod}'}\n", "the placeholders {namespace} and {date}"),
		Entry("openSearch index beginning with '-'", sinkHead+"  openSearch: {url: 'https://os:9200', index: -logs}\n", "index must not begin with '-', '_' or '+'"),
		Entry("openSearch index '..'", sinkHead+"  openSearch: {url: 'https://os:9200', index: '..'}\n", "nor be '.' or '..'"),
		Entry("openSearch index over 200 characters", sinkHead+"  openSearch: {url: 'https://os:9200', index: "+strings.Repeat("i", 201)+"}\n", "spec.openSearch.index"),
		Entry("openSearch unknown mode", sinkHead+"  openSearch: {url: 'https://os:9200', index: logs, mode: Alias}\n", `Unsupported value: "Alias"`),
		Entry("openSearch both basic auth and an API key", sinkHead+"  openSearch:\n    url: https://os:9200\n    index: logs\n    auth: {apiKey: {name: s, key: k}, basic: {username: {name: s, key: u}, password: {name: s, key: p}}}\n", "auth needs exactly one of basic or apiKey"),
		Entry("openSearch auth with neither", sinkHead+"  openSearch: {url: 'https://os:9200', index: logs, auth: {}}\n", "auth needs exactly one of basic or apiKey"),
		Entry("s3 endpoint with a path", sinkHead+"  s3: {endpoint: 'https://s3.example/logs', bucket: logs}\n", "endpoint has no path"),
		Entry("s3 tls on an http endpoint", sinkHead+"  s3: {endpoint: 'http://minio:9000', bucket: logs, tls: {insecureSkipVerify: true}}\n", "tls needs an https endpoint"),
		Entry("s3 bucket in upper case", sinkHead+"  s3: {endpoint: 'https://s3.example', bucket: Logs}\n", "spec.s3.bucket in body should match"),
		Entry("s3 access key without a secret key", sinkHead+"  s3: {endpoint: 'https://s3.example', bucket: logs, accessKeyID: {name: s, key: id}}\n", "accessKeyID and secretAccessKey must be set together"),
		Entry("s3 prefix with a leading slash", sinkHead+"  s3: {endpoint: 'https://s3.example', bucket: logs, prefix: /logs}\n", "prefix must be segments of letters"),
		Entry("s3 prefix with an unknown placeholder", sinkHead+"  s3: {endpoint: 'https://s3.example', bucket: logs, prefix: 'logs/{pod}'}\n", "the placeholders {namespace} and {pipeline}"),
		Entry("s3 prefix with a '..' segment", sinkHead+"  s3: {endpoint: 'https://s3.example', bucket: logs, prefix: 'logs/../x'}\n", "prefix must not have '.' or '..' segments"),
		Entry("s3 region with a space", sinkHead+"  s3: {endpoint: 'https://s3.example', bucket: logs, region: 'eu west'}\n", "spec.s3.region in body should match"),
		Entry("loki URL without scheme", sinkHead+"  loki: {url: 'loki:3100'}\n", "must be an absolute http or https URL"),
		Entry("loki URL with another scheme", sinkHead+"  loki: {url: 'ftp://loki:3100'}\n", "must be an absolute http or https URL"),
		Entry("relative http URL", sinkHead+"  http: {url: '/push'}\n", "must be an absolute http or https URL"),
		Entry("file path escaping the root", sinkHead+"  file: {path: 'logs/../../etc/passwd'}\n", "path must not contain '.' or '..' segments"),
		Entry("file path with a glob", sinkHead+"  file: {path: 'team-b/*'}\n", "path must be made of letters, digits"),
		Entry("file path with an empty segment", sinkHead+"  file: {path: 'a//b.log'}\n", "path must be made of letters, digits"),
		Entry("file path with a '.' segment", sinkHead+"  file: {path: './b.log'}\n", "path must not contain '.' or '..' segments"),
		Entry("static label overriding the namespace", sinkHead+"  loki: {url: 'https://x.example', staticLabels: {namespace: kube-system}}\n", "static labels must not set namespace, pod, container or node"),
		Entry("pod label overriding the namespace", sinkHead+"  loki: {url: 'https://x.example', podLabelsAsLabels: [namespace]}\n", "podLabelsAsLabels must not name namespace, pod, container or node"),
		Entry("tls on an http Loki URL", sinkHead+"  loki: {url: 'http://x.example', tls: {insecureSkipVerify: true}}\n", "tls needs an https URL"),
		Entry("tls on an http URL", sinkHead+"  http: {url: 'http://x.example', tls: {insecureSkipVerify: true}}\n", "tls needs an https URL"),
		Entry("a header value with CR/LF", sinkHead+"  http:\n    url: https://x.example\n    headers: [{name: X-Key, value: \"a\\r\\nX-Injected: 1\"}]\n", "a header value must not contain control characters"),
		Entry("an Authorization header", sinkHead+"  http:\n    url: https://x.example\n    headers: [{name: authorization, value: Bearer x}]\n", "this header is set by the operator"),
		Entry("a Host header", sinkHead+"  http:\n    url: https://x.example\n    headers: [{name: Host, value: internal}]\n", "this header is set by the operator"),
		Entry("absolute file path", sinkHead+"  file: {path: /etc/passwd}\n", "path must be relative to the operator's file sink root"),
		Entry("file size that is not a quantity", sinkHead+"  file: {path: a.log, maxSize: lots}\n", "spec.file.maxSize"),
		Entry("file size under 1Ki", sinkHead+"  file: {path: a.log, maxSize: 10}\n", "maxSize must be at least 1Ki"),
		Entry("file size over 10Gi", sinkHead+"  file: {path: a.log, maxSize: 20Gi}\n", "maxSize must be at most 10Gi"),
		Entry("unknown whenFull", sinkHead+"  stdout: {}\n  buffer: {whenFull: Explode}\n", `Unsupported value: "Explode"`),
		Entry("min backoff over max backoff", sinkHead+"  stdout: {}\n  retry: {minBackoff: 10m, maxBackoff: 1m}\n", "retry.minBackoff must not exceed retry.maxBackoff"),
		Entry("batch over 64Mi", sinkHead+"  stdout: {}\n  batch: {maxBytes: 100Mi}\n", "batch.maxBytes must be between 1Ki and 64Mi"),
		Entry("batch larger than buffer", sinkHead+"  stdout: {}\n  batch: {maxBytes: 4Mi}\n  buffer: {maxBytes: 2Mi}\n", "batch.maxBytes must not exceed buffer.maxBytes"),
		Entry("header with value and valueFrom", sinkHead+"  http:\n    url: https://x.example\n    headers: [{name: X-Key, value: a, valueFrom: {name: s, key: k}}]\n", "a header needs exactly one of value or valueFrom"),
		Entry("both basic auth and bearer token", sinkHead+"  loki:\n    url: https://x.example\n    auth: {bearerToken: {name: s, key: t}, basic: {username: {name: s, key: u}, password: {name: s, key: p}}}\n", "auth needs exactly one of basic or bearerToken"),
		Entry("client cert without key", sinkHead+"  loki:\n    url: https://x.example\n    tls: {cert: {name: s, key: tls.crt}}\n", "tls.cert and tls.key must be set together"),
		Entry("invalid static label name", sinkHead+"  loki:\n    url: https://x.example\n    staticLabels: {bad-name: x}\n", "static label names must match"),
		Entry("selector with an unknown operator", pipelineHead+"  sinks: [a]\n  selector: {matchExpressions: [{key: app, operator: Like, values: [x]}]}\n", `Unsupported value: "Like"`),
		Entry("selector with an invalid key", pipelineHead+"  sinks: [a]\n  selector: {matchLabels: {'bad key!': x}}\n", "matchLabels keys must be label keys"),
		Entry("selector with an invalid value", pipelineHead+"  sinks: [a]\n  selector: {matchLabels: {app: 'not a value!'}}\n", "label values must be up to 63 letters"),
		Entry("selector In without values", pipelineHead+"  sinks: [a]\n  selector: {matchExpressions: [{key: app, operator: In}]}\n", "In and NotIn need values; Exists and DoesNotExist take none"),
		Entry("file path '.'", sinkHead+"  file: {path: '.'}\n", "path must not contain '.' or '..' segments"),
		Entry("file path with a NUL", sinkHead+"  file: {path: \"a\\u0000b.log\"}\n", "path must be made of letters, digits"),
		Entry("file path with a newline", sinkHead+"  file: {path: \"a\\nb.log\"}\n", "path must be made of letters, digits"),
		Entry("file path with a trailing slash", sinkHead+"  file: {path: 'logs/'}\n", "path must be made of letters, digits"),
		Entry("URL with userinfo", sinkHead+"  loki: {url: 'https://user:pw@x.example'}\n", "must not hold credentials (user:password@): put them in auth, from a Secret"),
		Entry("URL with a fragment", sinkHead+"  loki: {url: 'https://x.example/#frag'}\n", "must not have a fragment"),
		Entry("URL without a host", sinkHead+"  loki: {url: 'http://:3100'}\n", "must name a host (http://:PORT has none)"),
		Entry("URL with only a scheme", sinkHead+"  http: {url: 'https://'}\n", "must be an absolute http or https URL"),
		Entry("reserved label name", sinkHead+"  loki:\n    url: https://x.example\n    staticLabels: {__name__: x}\n", "static label names must not begin with '__'"),
		Entry("over-long label name", sinkHead+"  loki:\n    url: https://x.example\n    staticLabels:\n      ? "+strings.Repeat("a", 1025)+"\n      : x\n", "static label names must be at most 1024 characters"),
		Entry("over-long label value", sinkHead+"  loki:\n    url: https://x.example\n    staticLabels: {team: "+strings.Repeat("v", 2000)+"}\n", "static label values must be at most 1024 bytes"),
		Entry("label value with a newline", sinkHead+"  loki:\n    url: https://x.example\n    staticLabels: {team: \"a\\nb\"}\n", "static label values must not contain control characters"),
		Entry("tenant ID '..'", sinkHead+"  loki: {url: 'https://x.example', tenantID: '..'}\n", "tenantID must not be '.' or '..'"),
		Entry("tenant ID with a slash", sinkHead+"  loki: {url: 'https://x.example', tenantID: 'a/b'}\n", "spec.loki.tenantID in body should match"),
		Entry("tenant ID with a pipe", sinkHead+"  loki: {url: 'https://x.example', tenantID: 'a|b'}\n", "spec.loki.tenantID in body should match"),
		Entry("pod label key invalid", sinkHead+"  loki: {url: 'https://x.example', podLabelsAsLabels: ['bad key!']}\n", "podLabelsAsLabels must be label keys"),
		Entry("header name invalid", sinkHead+"  http:\n    url: https://x.example\n    headers: [{name: 'X Key', value: a}]\n", "spec.http.headers[0].name in body should match"),
		Entry("secret name invalid", sinkHead+"  loki:\n    url: https://x.example\n    auth: {bearerToken: {name: 'Bad_Name', key: t}}\n", "spec.loki.auth.bearerToken.name in body should match"),
		Entry("secret key invalid", sinkHead+"  loki:\n    url: https://x.example\n    auth: {bearerToken: {name: s, key: 'a/b'}}\n", "spec.loki.auth.bearerToken.key in body should match"),
		Entry("server name invalid", sinkHead+"  loki:\n    url: https://x.example\n    tls: {serverName: 'a b'}\n", "spec.loki.tls.serverName in body should match"),
		Entry("policy selector with an unknown operator", "apiVersion: logs.capturer.dev/v1alpha1\nkind: CapturePolicy\nmetadata: {name: p}\nspec:\n  namespaceSelector: {matchExpressions: [{key: a, operator: Like}]}\n", `Unsupported value: "Like"`),
		Entry("policy sink type in the wrong case", "apiVersion: logs.capturer.dev/v1alpha1\nkind: CapturePolicy\nmetadata: {name: p3}\nspec:\n  namespaceSelector: {}\n  sinkTypes: [Loki, Opensearch]\n", `Unsupported value: "Opensearch"`),
		Entry("policy naming OpenSearch twice", "apiVersion: logs.capturer.dev/v1alpha1\nkind: CapturePolicy\nmetadata: {name: p4}\nspec:\n  namespaceSelector: {}\n  sinkTypes: [OpenSearch, Loki, OpenSearch]\n", "Duplicate value"),
		Entry("policy tenant glob '..'", "apiVersion: logs.capturer.dev/v1alpha1\nkind: CapturePolicy\nmetadata: {name: p2}\nspec:\n  namespaceSelector: {}\n  lokiTenantIDs: ['..']\n", "a tenant ID glob must not be '.' or '..'"),
		Entry("unknown metadata label", sinkHead+"  loki:\n    url: https://x.example\n    metadataLabels: [cluster]\n", `Unsupported value: "cluster"`),
	)
})

var _ = Describe("Defaults", func() {
	It("fills every optional field of a minimal LogPipeline", func() {
		ns := newNamespace()
		p := &logsv1alpha1.LogPipeline{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "minimal"},
			Spec:       logsv1alpha1.LogPipelineSpec{Sinks: []logsv1alpha1.SinkName{"out"}},
		}
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		got := &logsv1alpha1.LogPipeline{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), got)).To(Succeed())
		Expect(got.Spec.Rotation.Interval.Duration).To(Equal(5 * time.Minute))
		Expect(got.Spec.StreamPool.MaxStreams).To(Equal(int32(50)))
		Expect(got.Spec.StartAt).To(Equal(logsv1alpha1.StartAtNow))
		Expect(got.Spec.Health.MaxGoroutineGrowthPerMinute).To(Equal(int32(2)))
		Expect(got.Spec.Health.MaxFDGrowthPer10Minutes).To(Equal(int32(50)))
		Expect(got.Spec.Health.Window.Duration).To(Equal(10 * time.Minute))
		Expect(got.Spec.Health.NoDeliveryTimeout.Duration).To(Equal(5 * time.Minute))
		Expect(got.Spec.Lines.MaxSize.Equal(resource.MustParse("1Mi"))).To(BeTrue())
		Expect(got.Spec.Suspend).To(BeFalse())
	})

	It("fills every optional field of a minimal Loki SinkTarget", func() {
		ns := newNamespace()
		s := &logsv1alpha1.SinkTarget{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "loki"},
			Spec:       logsv1alpha1.SinkTargetSpec{Loki: &logsv1alpha1.LokiSink{URL: "http://loki:3100"}},
		}
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		got := &logsv1alpha1.SinkTarget{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), got)).To(Succeed())
		Expect(got.Spec.Loki.Encoding).To(Equal(logsv1alpha1.LokiEncodingProtobuf))
		Expect(got.Spec.Loki.MetadataLabels).To(Equal([]logsv1alpha1.MetadataLabel{"namespace", "container"}))
		Expect(got.Spec.Loki.PodLabelsAsLabels).To(Equal([]string{"app"}))
		Expect(got.Spec.Batch.MaxBytes.Equal(resource.MustParse("1Mi"))).To(BeTrue())
		Expect(got.Spec.Batch.MaxWait.Duration).To(Equal(time.Second))
		Expect(got.Spec.Retry.MinBackoff.Duration).To(Equal(500 * time.Millisecond))
		Expect(got.Spec.Retry.MaxBackoff.Duration).To(Equal(5 * time.Minute))
		Expect(got.Spec.Buffer.MaxBytes.Equal(resource.MustParse("8Mi"))).To(BeTrue())
		Expect(got.Spec.Buffer.WhenFull).To(Equal(logsv1alpha1.WhenFullBlock))
	})

	It("fills the OTLP sink's defaults and accepts a gRPC one with headers", func() {
		ns := newNamespace()
		s := &logsv1alpha1.SinkTarget{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "otlp"},
			Spec:       logsv1alpha1.SinkTargetSpec{OTLP: &logsv1alpha1.OTLPSink{URL: "http://otel-collector:4318"}},
		}
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		got := &logsv1alpha1.SinkTarget{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), got)).To(Succeed())
		Expect(got.Spec.OTLP.Protocol).To(Equal(logsv1alpha1.OTLPProtocolHTTPProtobuf))
		Expect(got.Spec.OTLP.Compression).To(Equal(logsv1alpha1.HTTPCompressionGzip))
		Expect(got.Spec.Type()).To(Equal(logsv1alpha1.SinkTypeOTLP))
		value := "shop"
		g := &logsv1alpha1.SinkTarget{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "otlp-grpc"},
			Spec: logsv1alpha1.SinkTargetSpec{OTLP: &logsv1alpha1.OTLPSink{URL: "https://otel-collector:4317/", Protocol: logsv1alpha1.OTLPProtocolGRPC,
				Headers:            []logsv1alpha1.HTTPHeader{{Name: "x-scope.org_id", Value: &value}},
				ResourceAttributes: map[string]string{"k8s.cluster.name": "prod", "service.namespace": "shop"}}},
		}
		Expect(k8sClient.Create(ctx, g)).To(Succeed())
	})

	It("fills the Kafka sink's defaults and accepts SCRAM without TLS and a templated topic", func() {
		ns := newNamespace()
		s := &logsv1alpha1.SinkTarget{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kafka"},
			Spec:       logsv1alpha1.SinkTargetSpec{Kafka: &logsv1alpha1.KafkaSink{Brokers: []string{"kafka-0.kafka:9092", "10.1.2.3:9092"}, Topic: "logs.{namespace}_{pod}-{container}"}},
		}
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		got := &logsv1alpha1.SinkTarget{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), got)).To(Succeed())
		Expect(got.Spec.Kafka.Key).To(Equal(logsv1alpha1.KafkaKeyContainer))
		Expect(got.Spec.Kafka.Compression).To(Equal(logsv1alpha1.KafkaCompression("Snappy")))
		Expect(got.Spec.Kafka.MaxMessageBytes.Value()).To(Equal(int64(1048588)), "Kafka's default message.max.bytes")
		Expect(got.Spec.Type()).To(Equal(logsv1alpha1.SinkTypeKafka))
		scram := &logsv1alpha1.SinkTarget{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kafka-scram"},
			Spec: logsv1alpha1.SinkTargetSpec{Kafka: &logsv1alpha1.KafkaSink{Brokers: []string{"k:9092"}, Topic: "logs",
				SASL: &logsv1alpha1.KafkaSASL{Mechanism: "SCRAM-SHA-512", Username: logsv1alpha1.SecretKeySelector{Name: "s", Key: "u"},
					Password: logsv1alpha1.SecretKeySelector{Name: "s", Key: "p"}}}},
		}
		Expect(k8sClient.Create(ctx, scram)).To(Succeed())
	})

	It("fills the Elasticsearch sink's defaults and accepts a templated index", func() {
		ns := newNamespace()
		s := &logsv1alpha1.SinkTarget{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "es"},
			Spec:       logsv1alpha1.SinkTargetSpec{Elasticsearch: &logsv1alpha1.ElasticsearchSink{URL: "https://es.logging:9200", Index: "logs-k8s.{namespace}-{date}"}},
		}
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		got := &logsv1alpha1.SinkTarget{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), got)).To(Succeed())
		Expect(got.Spec.Elasticsearch.Mode).To(Equal(logsv1alpha1.ElasticsearchModeDataStream))
		Expect(got.Spec.Type()).To(Equal(logsv1alpha1.SinkTypeElasticsearch))
	})

	It("fills the OpenSearch sink's defaults and accepts a templated index", func() {
		ns := newNamespace()
		s := &logsv1alpha1.SinkTarget{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "opensearch"},
			Spec: logsv1alpha1.SinkTargetSpec{OpenSearch: &logsv1alpha1.OpenSearchSink{URL: "https://opensearch.logging:9200", Index: "logs-k8s.{namespace}-{date}",
				Auth: &logsv1alpha1.OpenSearchAuth{APIKey: &logsv1alpha1.SecretKeySelector{Name: "os", Key: "token"}}}},
		}
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		got := &logsv1alpha1.SinkTarget{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), got)).To(Succeed())
		Expect(got.Spec.OpenSearch.Mode).To(Equal(logsv1alpha1.OpenSearchModeDataStream))
		Expect(got.Spec.Type()).To(Equal(logsv1alpha1.SinkTypeOpenSearch))
	})

	It("fills the S3 sink's defaults", func() {
		ns := newNamespace()
		s := &logsv1alpha1.SinkTarget{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "s3"},
			Spec:       logsv1alpha1.SinkTargetSpec{S3: &logsv1alpha1.S3Sink{Endpoint: "http://minio.storage:9000", Bucket: "cluster.logs-1"}},
		}
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		got := &logsv1alpha1.SinkTarget{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), got)).To(Succeed())
		Expect(got.Spec.S3.Region).To(Equal("us-east-1"))
		Expect(got.Spec.S3.Prefix).To(Equal("logs/{namespace}"))
		Expect(got.Spec.S3.Compression).To(Equal(logsv1alpha1.HTTPCompressionGzip))
		Expect(got.Spec.Type()).To(Equal(logsv1alpha1.SinkTypeS3))
	})

	It("fills the File sink's rotation defaults", func() {
		ns := newNamespace()
		s := &logsv1alpha1.SinkTarget{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "file"},
			Spec:       logsv1alpha1.SinkTargetSpec{File: &logsv1alpha1.FileSink{Path: "app/out.log"}},
		}
		Expect(k8sClient.Create(ctx, s)).To(Succeed())
		got := &logsv1alpha1.SinkTarget{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(s), got)).To(Succeed())
		Expect(got.Spec.File.Format).To(Equal(logsv1alpha1.RecordFormatJSON))
		Expect(got.Spec.File.MaxSize.Equal(resource.MustParse("100Mi"))).To(BeTrue())
		Expect(got.Spec.File.MaxFiles).To(Equal(int32(5)))
		Expect(got.Spec.File.Compress).To(HaveValue(BeTrue()))
	})
})

var _ = Describe("Samples", func() {
	It("apply to the API server", func() {
		ns := newNamespace()
		root, err := envtestutil.RepoRoot()
		Expect(err).NotTo(HaveOccurred())
		files, err := filepath.Glob(filepath.Join(root, "config", "samples", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		created := 0
		for _, f := range files {
			if filepath.Base(f) == "kustomization.yaml" {
				continue
			}
			for _, u := range readManifests(f) {
				u.SetNamespace(ns)
				Expect(k8sClient.Create(ctx, u)).To(Succeed(), "creating %s %s from %s", u.GetKind(), u.GetName(), f)
				created++
			}
		}
		Expect(created).To(BeNumerically(">=", 6), "the samples hold a pipeline, one SinkTarget per type and their Secrets")
	})
})

func readManifests(path string) []*unstructured.Unstructured {
	b, err := os.ReadFile(path)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	objs, err := envtestutil.DecodeObjects(bytes.NewReader(b))
	ExpectWithOffset(1, err).NotTo(HaveOccurred(), "decoding %s", path)
	var out []*unstructured.Unstructured
	for _, u := range objs {
		if strings.TrimSpace(u.GetKind()) != "" {
			out = append(out, u)
		}
	}
	return out
}

var _ = Describe("dist/install-api.yaml", func() {
	It("is accepted object by object by the API server (server-side apply, dry run)", func() {
		root, err := envtestutil.RepoRoot()
		Expect(err).NotTo(HaveOccurred())
		path := filepath.Join(root, "dist", "install-api.yaml")
		_, err = os.Stat(path)
		Expect(err).NotTo(HaveOccurred(), "run 'make build-installer' (make test does) to write %s", path)
		objs := readManifests(path)
		kinds, err := envtestutil.DryRunApply(ctx, k8sClient, "install-test", objs)
		Expect(err).NotTo(HaveOccurred())
		Expect(kinds).To(HaveKeyWithValue("CustomResourceDefinition", 3))
		Expect(kinds).To(HaveKeyWithValue("Deployment", 1))
		Expect(kinds).To(HaveKey("ClusterRole"))
		Expect(kinds).To(HaveKey("Service"))
		Expect(kinds).To(HaveKeyWithValue("NetworkPolicy", 1))

		var dep *unstructured.Unstructured
		for _, u := range objs {
			if u.GetKind() == "Deployment" {
				dep = u
			}
		}
		pod, _, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec")
		Expect(pod).To(HaveKeyWithValue("securityContext", And(HaveKeyWithValue("runAsNonRoot", true),
			HaveKeyWithValue("seccompProfile", HaveKeyWithValue("type", "RuntimeDefault")))))
		containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
		Expect(containers).To(HaveLen(1))
		c := containers[0].(map[string]any)
		Expect(c).To(HaveKeyWithValue("securityContext", And(HaveKeyWithValue("readOnlyRootFilesystem", true),
			HaveKeyWithValue("allowPrivilegeEscalation", false),
			HaveKeyWithValue("capabilities", HaveKeyWithValue("drop", ContainElement("ALL"))))))
		Expect(c).To(HaveKey("livenessProbe"))
		Expect(c).To(HaveKey("readinessProbe"))
		Expect(c).To(HaveKeyWithValue("resources", And(HaveKey("requests"), HaveKey("limits"))))
		volumes, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "volumes")
		for _, v := range volumes {
			Expect(v).To(HaveKeyWithValue("emptyDir", HaveKey("sizeLimit")), "every emptyDir is bounded: %v", v)
		}
	})

	It("with node agents (dist/install.yaml) is accepted too; the agents run with the least they need", func() {
		root, err := envtestutil.RepoRoot()
		Expect(err).NotTo(HaveOccurred())
		path := filepath.Join(root, "dist", "install.yaml")
		_, err = os.Stat(path)
		Expect(err).NotTo(HaveOccurred(), "run 'make build-installer' (make test does) to write %s", path)
		objs := readManifests(path)
		for _, u := range objs {
			if u.GetKind() == "Namespace" {
				Expect(client.IgnoreAlreadyExists(k8sClient.Create(ctx, u.DeepCopy()))).To(Succeed())
			}
		}
		var ds, dep *unstructured.Unstructured
		var agentRules []any
		var agentRoles []string
		for _, u := range objs {
			u.SetManagedFields(nil)
			Expect(k8sClient.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("install-test"), client.ForceOwnership, client.DryRunAll)).
				To(Succeed(), "%s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
			switch {
			case u.GetKind() == "DaemonSet":
				ds = u
			case u.GetKind() == "Deployment":
				dep = u
			case u.GetKind() == "ClusterRole" && u.GetName() == "log-capturer-agent":
				agentRules, _, _ = unstructured.NestedSlice(u.Object, "rules")
			case u.GetKind() == "ClusterRoleBinding" && strings.HasPrefix(u.GetName(), "log-capturer-agent"):
				role, _, _ := unstructured.NestedString(u.Object, "roleRef", "name")
				agentRoles = append(agentRoles, role)
			case u.GetKind() == "Namespace" && u.GetName() == "log-capturer-system":
				Expect(u.GetLabels()).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"), "the operator's namespace stays restricted")
			}
		}
		Expect(ds).NotTo(BeNil())
		Expect(ds.GetNamespace()).To(Equal("log-capturer-agents"))
		containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
		args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
		Expect(args).To(ContainElements("--capture=auto", "--agent-service-account=log-capturer-agents/log-capturer-agent"))

		By("the agents read pods and nothing else: no Secrets, no LogPipelines or SinkTargets")
		Expect(agentRules).To(HaveLen(1))
		Expect(agentRules[0]).To(And(HaveKeyWithValue("resources", ConsistOf("pods")), HaveKeyWithValue("verbs", ConsistOf("get", "list", "watch"))))
		// and reviews its metrics scrapers' tokens, which stores nothing.
		Expect(agentRoles).To(ConsistOf("log-capturer-agent", "system:auth-delegator"))

		By("a surge rollout, every node by default, a pod-bound token for the operator's audience, the kubelet's files read-only")
		strategy, _, _ := unstructured.NestedMap(ds.Object, "spec", "updateStrategy", "rollingUpdate")
		Expect(strategy).To(And(HaveKeyWithValue("maxSurge", BeNumerically("==", 1)), HaveKeyWithValue("maxUnavailable", BeNumerically("==", 0))))
		pod, _, _ := unstructured.NestedMap(ds.Object, "spec", "template", "spec")
		Expect(pod).To(HaveKeyWithValue("tolerations", ContainElement(HaveKeyWithValue("operator", "Exists"))))
		Expect(pod).NotTo(HaveKey("hostNetwork"))
		Expect(pod).NotTo(HaveKey("hostPID"))
		dsContainers, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "containers")
		Expect(dsContainers).To(HaveLen(1))
		c := dsContainers[0].(map[string]any)
		Expect(c).To(HaveKeyWithValue("securityContext", And(HaveKeyWithValue("readOnlyRootFilesystem", true),
			HaveKeyWithValue("allowPrivilegeEscalation", false), Not(HaveKey("privileged")),
			HaveKeyWithValue("capabilities", And(HaveKeyWithValue("drop", ContainElement("ALL")), Not(HaveKey("add")))))))
		Expect(c).To(HaveKeyWithValue("volumeMounts", ContainElement(And(HaveKeyWithValue("mountPath", "/var/log/pods"), HaveKeyWithValue("readOnly", true)))))
		Expect(c).To(And(HaveKey("livenessProbe"), HaveKey("readinessProbe"), HaveKeyWithValue("resources", And(HaveKey("requests"), HaveKey("limits")))))
		volumes, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "volumes")
		hostPaths := map[string]bool{}
		for _, v := range volumes {
			v := v.(map[string]any)
			if hp, ok := v["hostPath"].(map[string]any); ok {
				hostPaths[hp["path"].(string)] = true
			}
			if ed, ok := v["emptyDir"]; ok {
				Expect(ed).To(HaveKey("sizeLimit"), "every emptyDir is bounded: %v", v)
			}
		}
		Expect(hostPaths).To(Equal(map[string]bool{"/var/log/pods": true, "/var/lib/log-capturer/agent": true}))
		Expect(volumes).To(ContainElement(HaveKeyWithValue("projected", HaveKeyWithValue("sources",
			ContainElement(HaveKeyWithValue("serviceAccountToken", HaveKeyWithValue("audience", identity.Audience)))))))
	})

	It("aggregates read rights into view, edit and admin, and write rights into edit and admin only", func() {
		root, err := envtestutil.RepoRoot()
		Expect(err).NotTo(HaveOccurred())
		rules := map[string][]string{} // aggregate-to-* label -> verbs on logpipelines
		for _, u := range readManifests(filepath.Join(root, "dist", "install-api.yaml")) {
			if u.GetKind() != "ClusterRole" {
				continue
			}
			rs, _, _ := unstructured.NestedSlice(u.Object, "rules")
			for label, v := range u.GetLabels() {
				if v != "true" || !strings.HasPrefix(label, "rbac.authorization.k8s.io/aggregate-to-") {
					continue
				}
				for _, r := range rs {
					r := r.(map[string]any)
					res, _, _ := unstructured.NestedStringSlice(r, "resources")
					verbs, _, _ := unstructured.NestedStringSlice(r, "verbs")
					if slices.Contains(res, "logpipelines") && slices.Contains(res, "sinktargets") {
						rules[strings.TrimPrefix(label, "rbac.authorization.k8s.io/aggregate-to-")] = append(rules[strings.TrimPrefix(label, "rbac.authorization.k8s.io/aggregate-to-")], verbs...)
					}
				}
			}
		}
		Expect(rules["view"]).To(ConsistOf("get", "list", "watch"))
		for _, role := range []string{"edit", "admin"} {
			Expect(rules[role]).To(ContainElements("get", "list", "watch", "create", "update", "patch", "delete"), role)
		}
	})

	It("gives the operator no list or watch on Secrets, and no write on ConfigMaps beyond its namespace", func() {
		root, err := envtestutil.RepoRoot()
		Expect(err).NotTo(HaveOccurred())
		for _, u := range readManifests(filepath.Join(root, "dist", "install-api.yaml")) {
			if u.GetKind() != "ClusterRole" {
				continue
			}
			rs, _, _ := unstructured.NestedSlice(u.Object, "rules")
			for _, r := range rs {
				r := r.(map[string]any)
				res, _, _ := unstructured.NestedStringSlice(r, "resources")
				verbs, _, _ := unstructured.NestedStringSlice(r, "verbs")
				if slices.Contains(res, "secrets") {
					Expect(verbs).To(ConsistOf("get"), "ClusterRole %s on Secrets", u.GetName())
				}
				if slices.Contains(res, "configmaps") {
					Expect(verbs).To(ConsistOf("get"), "ClusterRole %s on ConfigMaps", u.GetName())
				}
			}
		}
	})
})
