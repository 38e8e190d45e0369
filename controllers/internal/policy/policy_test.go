package policy

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
)

func pol(name string, sel map[string]string, f func(*logsv1alpha1.CapturePolicySpec)) logsv1alpha1.CapturePolicy {
	p := logsv1alpha1.CapturePolicy{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: logsv1alpha1.CapturePolicySpec{NamespaceSelector: *logsv1alpha1.SelectorFromMap(sel),
			SinkTypes: []logsv1alpha1.PolicySinkType{"Loki", "HTTP", "OTLP", "Kafka", "Elasticsearch", "OpenSearch", "S3"}}}
	if f != nil {
		f(&p.Spec)
	}
	return p
}

func TestSelect(t *testing.T) {
	ps := []logsv1alpha1.CapturePolicy{
		pol("b-tenants", map[string]string{"tenant": "true"}, nil),
		pol("a-strict", map[string]string{"tier": "strict"}, nil),
		pol("z-default", nil, nil),
	}
	tests := []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{"tenant": "true"}, "b-tenants"},
		{map[string]string{"tenant": "true", "tier": "strict"}, "a-strict"}, // both match: the first name
		{map[string]string{"team": "x"}, "z-default"},
	}
	for _, tc := range tests {
		got, _ := Select(ps, tc.labels)
		if got == nil || got.Name != tc.want {
			t.Errorf("labels %v: got %v, want %s", tc.labels, got, tc.want)
		}
	}
	if got, _ := Select(ps[:2], map[string]string{"team": "x"}); got != nil {
		t.Errorf("no policy matches, got %s", got.Name)
	}
	bad := pol("broken", nil, func(s *logsv1alpha1.CapturePolicySpec) {
		s.NamespaceSelector.MatchExpressions = []logsv1alpha1.LabelSelectorRequirement{{Key: "x", Operator: "Bogus"}}
	})
	if got, broken := Select([]logsv1alpha1.CapturePolicy{bad}, nil); got != nil || len(broken) != 1 {
		t.Errorf("a broken selector selected %v (broken %v)", got, broken)
	}
}

// TestCheck is the policy matrix: allowed and denied per sink type,
// destination host, Loki tenant and insecureSkipVerify.
func TestCheck(t *testing.T) {
	loki := func(url, tenant string) *logsv1alpha1.SinkTarget {
		return &logsv1alpha1.SinkTarget{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "s"},
			Spec: logsv1alpha1.SinkTargetSpec{Loki: &logsv1alpha1.LokiSink{URL: logsv1alpha1.URL(url), TenantID: tenant}}}
	}
	st := func(f func(*logsv1alpha1.SinkTargetSpec)) *logsv1alpha1.SinkTarget {
		s := &logsv1alpha1.SinkTarget{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "s"}}
		f(&s.Spec)
		return s
	}
	hosts := func(s *logsv1alpha1.CapturePolicySpec) {
		s.DestinationHosts = []string{"*.monitoring.svc", "loki.example.com"}
	}
	tenants := func(s *logsv1alpha1.CapturePolicySpec) { s.LokiTenantIDs = []string{"{namespace}", "shared-*"} }
	bufferLimit := func(s *logsv1alpha1.CapturePolicySpec) {
		s.Limits = &logsv1alpha1.PolicyLimits{MaxBufferBytes: ptr.To(resource.MustParse("4Mi"))}
	}
	tests := []struct {
		name   string
		policy func(*logsv1alpha1.CapturePolicySpec)
		sink   *logsv1alpha1.SinkTarget
		want   string // substring of the violation; "" allowed
	}{
		{"loki allowed by default", nil, loki("http://loki.monitoring.svc:3100", ""), ""},
		{"file denied by default", nil, st(func(s *logsv1alpha1.SinkTargetSpec) { s.File = &logsv1alpha1.FileSink{Path: "a.log"} }), "does not allow File sinks (allowed: Loki, HTTP, OTLP, Kafka, Elasticsearch, OpenSearch, S3)"},
		{"s3 endpoint denied", hosts, st(func(s *logsv1alpha1.SinkTargetSpec) {
			s.S3 = &logsv1alpha1.S3Sink{Endpoint: "https://s3.attacker.example", Bucket: "logs"}
		}), `does not allow the destination host "s3.attacker.example"`},
		{"s3 endpoint allowed", hosts, st(func(s *logsv1alpha1.SinkTargetSpec) {
			s.S3 = &logsv1alpha1.S3Sink{Endpoint: "http://minio.monitoring.svc:9000", Bucket: "logs"}
		}), ""},
		{"elasticsearch host denied", hosts, st(func(s *logsv1alpha1.SinkTargetSpec) {
			s.Elasticsearch = &logsv1alpha1.ElasticsearchSink{URL: "https://es.attacker.example:9200", Index: "logs"}
		}), `does not allow the destination host "es.attacker.example"`},
		{"elasticsearch insecureSkipVerify denied", nil, st(func(s *logsv1alpha1.SinkTargetSpec) {
			s.Elasticsearch = &logsv1alpha1.ElasticsearchSink{URL: "https://es:9200", Index: "logs", TLS: &logsv1alpha1.TLSSpec{InsecureSkipVerify: true}}
		}), "does not allow tls.insecureSkipVerify"},
		{"opensearch host denied", hosts, st(func(s *logsv1alpha1.SinkTargetSpec) {
			s.OpenSearch = &logsv1alpha1.OpenSearchSink{URL: "https://opensearch.attacker.example:9200", Index: "logs"}
		}), `does not allow the destination host "opensearch.attacker.example"`},
		{"opensearch host allowed", hosts, st(func(s *logsv1alpha1.SinkTargetSpec) {
			s.OpenSearch = &logsv1alpha1.OpenSearchSink{URL: "https://opensearch.monitoring.svc:9200", Index: "logs"}
		}), ""},
		{"opensearch insecureSkipVerify denied", nil, st(func(s *logsv1alpha1.SinkTargetSpec) {
			s.OpenSearch = &logsv1alpha1.OpenSearchSink{URL: "https://os:9200", Index: "logs", TLS: &logsv1alpha1.TLSSpec{InsecureSkipVerify: true}}
		}), "does not allow tls.insecureSkipVerify"},
		{"opensearch not in the policy's types", func(p *logsv1alpha1.CapturePolicySpec) { p.SinkTypes = []logsv1alpha1.PolicySinkType{"Elasticsearch"} },
			st(func(s *logsv1alpha1.SinkTargetSpec) {
				s.OpenSearch = &logsv1alpha1.OpenSearchSink{URL: "https://os:9200", Index: "logs"}
			}), "does not allow OpenSearch sinks (allowed: Elasticsearch)"},
		{"kafka brokers allowed", hosts, st(func(s *logsv1alpha1.SinkTargetSpec) {
			s.Kafka = &logsv1alpha1.KafkaSink{Brokers: []string{"kafka-0.monitoring.svc:9092", "kafka-1.monitoring.svc:9092"}, Topic: "logs"}
		}), ""},
		{"one kafka broker denied", hosts, st(func(s *logsv1alpha1.SinkTargetSpec) {
			s.Kafka = &logsv1alpha1.KafkaSink{Brokers: []string{"kafka-0.monitoring.svc:9092", "10.0.0.9:9092"}, Topic: "logs"}
		}), `does not allow the destination host "10.0.0.9"`},
		{"kafka insecureSkipVerify denied", nil, st(func(s *logsv1alpha1.SinkTargetSpec) {
			s.Kafka = &logsv1alpha1.KafkaSink{Brokers: []string{"k:9093"}, Topic: "logs", TLS: &logsv1alpha1.TLSSpec{InsecureSkipVerify: true}}
		}), "does not allow tls.insecureSkipVerify"},
		{"otlp denied when not listed", func(s *logsv1alpha1.CapturePolicySpec) { s.SinkTypes = []logsv1alpha1.PolicySinkType{"Loki"} },
			st(func(s *logsv1alpha1.SinkTargetSpec) {
				s.OTLP = &logsv1alpha1.OTLPSink{URL: "https://otel.monitoring.svc"}
			}), "does not allow OTLP sinks (allowed: Loki)"},
		{"otlp host allowed", hosts, st(func(s *logsv1alpha1.SinkTargetSpec) {
			s.OTLP = &logsv1alpha1.OTLPSink{URL: "http://otel.monitoring.svc:4318"}
		}), ""},
		{"otlp host denied", hosts, st(func(s *logsv1alpha1.SinkTargetSpec) {
			s.OTLP = &logsv1alpha1.OTLPSink{URL: "https://otlp.attacker.example:4317", Protocol: logsv1alpha1.OTLPProtocolGRPC}
		}), `does not allow the destination host "otlp.attacker.example"`},
		{"otlp insecureSkipVerify denied", nil, st(func(s *logsv1alpha1.SinkTargetSpec) {
			s.OTLP = &logsv1alpha1.OTLPSink{URL: "https://otel", TLS: &logsv1alpha1.TLSSpec{InsecureSkipVerify: true}}
		}), "does not allow tls.insecureSkipVerify"},
		{"stdout denied by default", nil, st(func(s *logsv1alpha1.SinkTargetSpec) { s.Stdout = &logsv1alpha1.StdoutSink{} }), "does not allow Stdout sinks"},
		{"stdout allowed when listed", func(s *logsv1alpha1.CapturePolicySpec) { s.SinkTypes = append(s.SinkTypes, "Stdout") },
			st(func(s *logsv1alpha1.SinkTargetSpec) { s.Stdout = &logsv1alpha1.StdoutSink{} }), ""},
		{"host matches a glob", hosts, loki("http://loki.monitoring.svc:3100", ""), ""},
		{"host matches exactly, any case", hosts, loki("https://LOKI.example.com", ""), ""},
		{"glob does not cross a dot", hosts, loki("http://evil.loki.monitoring.svc", ""), `destination host "evil.loki.monitoring.svc"`},
		{"other host denied", hosts, loki("http://10.0.0.1:3100", ""), `does not allow the destination host "10.0.0.1"`},
		{"http sink host denied", hosts, st(func(s *logsv1alpha1.SinkTargetSpec) {
			s.HTTP = &logsv1alpha1.HTTPSink{URL: "https://collector.attacker.example/push"}
		}), `"collector.attacker.example"`},
		{"own namespace tenant", tenants, loki("http://loki.monitoring.svc", "shop"), ""},
		{"shared tenant glob", tenants, loki("http://loki.monitoring.svc", "shared-logs"), ""},
		{"another namespace's tenant", tenants, loki("http://loki.monitoring.svc", "kube-system"), "does not allow the Loki tenant ID kube-system"},
		{"no tenant when one is required", tenants, loki("http://loki.monitoring.svc", ""), "Loki tenant ID (none)"},
		{"insecureSkipVerify denied", nil, st(func(s *logsv1alpha1.SinkTargetSpec) {
			s.Loki = &logsv1alpha1.LokiSink{URL: "https://loki", TLS: &logsv1alpha1.TLSSpec{InsecureSkipVerify: true}}
		}), "does not allow tls.insecureSkipVerify"},
		{"buffer within the limit", bufferLimit, st(func(s *logsv1alpha1.SinkTargetSpec) {
			s.Loki, s.Buffer.MaxBytes = &logsv1alpha1.LokiSink{URL: "https://loki"}, resource.MustParse("4Mi")
		}), ""},
		{"buffer over the limit", bufferLimit, st(func(s *logsv1alpha1.SinkTargetSpec) {
			s.Loki, s.Buffer.MaxBytes = &logsv1alpha1.LokiSink{URL: "https://loki"}, resource.MustParse("64Mi")
		}), "allows at most 4Mi of spec.buffer.maxBytes per sink (limits.maxBufferBytes); this SinkTarget asks for 64Mi"},
		{"insecureSkipVerify allowed", func(s *logsv1alpha1.CapturePolicySpec) { s.AllowInsecureSkipVerify = true }, st(func(s *logsv1alpha1.SinkTargetSpec) {
			s.Loki = &logsv1alpha1.LokiSink{URL: "https://loki", TLS: &logsv1alpha1.TLSSpec{InsecureSkipVerify: true}}
		}), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := pol("tenants", nil, tc.policy)
			got := Check(&p, tc.sink)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if got != "" && !strings.Contains(got, `CapturePolicy "tenants"`) {
				t.Fatalf("the violation does not name the policy: %q", got)
			}
		})
	}
	if got := Check(nil, loki("http://anything", "x")); got != "" {
		t.Fatalf("no policy: %q", got)
	}
}

func TestCheckDefaults(t *testing.T) {
	file := &logsv1alpha1.SinkTarget{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "f"},
		Spec: logsv1alpha1.SinkTargetSpec{File: &logsv1alpha1.FileSink{Path: "a.log"}}}
	loki := &logsv1alpha1.SinkTarget{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "l"},
		Spec: logsv1alpha1.SinkTargetSpec{Loki: &logsv1alpha1.LokiSink{URL: "https://loki"}}}
	otlp := &logsv1alpha1.SinkTarget{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "o"},
		Spec: logsv1alpha1.SinkTargetSpec{OTLP: &logsv1alpha1.OTLPSink{URL: "https://otel"}}}
	kafka := &logsv1alpha1.SinkTarget{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "k"},
		Spec: logsv1alpha1.SinkTargetSpec{Kafka: &logsv1alpha1.KafkaSink{Brokers: []string{"k:9092"}, Topic: "logs"}}}
	es := &logsv1alpha1.SinkTarget{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "e"},
		Spec: logsv1alpha1.SinkTargetSpec{Elasticsearch: &logsv1alpha1.ElasticsearchSink{URL: "https://es:9200", Index: "logs"}}}
	opensearch := &logsv1alpha1.SinkTarget{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "os"},
		Spec: logsv1alpha1.SinkTargetSpec{OpenSearch: &logsv1alpha1.OpenSearchSink{URL: "https://os:9200", Index: "logs"}}}
	s3 := &logsv1alpha1.SinkTarget{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "s"},
		Spec: logsv1alpha1.SinkTargetSpec{S3: &logsv1alpha1.S3Sink{Endpoint: "https://s3.example", Bucket: "logs"}}}
	shipped := []logsv1alpha1.PolicySinkType{"Loki", "HTTP", "OTLP", "Kafka", "Elasticsearch", "OpenSearch", "S3"}
	for _, st := range []*logsv1alpha1.SinkTarget{loki, otlp, kafka, es, opensearch, s3} {
		if got := CheckDefaults(shipped, st); got != "" {
			t.Fatalf("%s under the shipped defaults: %q", st.Spec.Type(), got)
		}
	}
	if got := CheckDefaults(shipped[:2], otlp); !strings.Contains(got, "which leave OTLP sinks to the cluster admin") {
		t.Fatalf("OTLP where the admin's defaults leave it out: %q", got)
	}
	got := CheckDefaults(shipped, file)
	if !strings.Contains(got, `No CapturePolicy applies to namespace "shop"`) || !strings.Contains(got, "(--default-sink-types: Loki, HTTP, OTLP, Kafka, Elasticsearch, OpenSearch, S3), which leave File sinks to the cluster admin") {
		t.Fatalf("File under the shipped defaults: %q", got)
	}
	if got := CheckDefaults(nil, file); got != "" {
		t.Fatalf("no defaults allow every type: %q", got)
	}
}
