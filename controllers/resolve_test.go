package controllers

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"slices"
	"sort"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/test/builders"
)

const testCA = `-----BEGIN CERTIFICATE-----
MIIBhTCCASugAwIBAgIQIRi6zePL6mKjOipn+dNuaTAKBggqhkjOPQQDAjASMRAw
DgYDVQQKEwdBY21lIENvMB4XDTE3MTAyMDE5NDMwNloXDTE4MTAyMDE5NDMwNlow
EjEQMA4GA1UEChMHQWNtZSBDbzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABD0d
7VNhbWvZLWPuj/RtHFjvtJBEwOkhbN/BnnE8rnZR8+sbwnc/KhCk3FhnpHZnQz7B
5aETbbIgmuvewdjvSBSjYzBhMA4GA1UdDwEB/wQEAwICpDATBgNVHSUEDDAKBggr
BgEFBQcDATAPBgNVHRMBAf8EBTADAQH/MCkGA1UdEQQiMCCCDmxvY2FsaG9zdDo1
NDUzgg4xMjcuMC4wLjE6NTQ1MzAKBggqhkjOPQQDAgNIADBFAiEA2zpJEPQyz6/l
Wf86aX6PepsntZv2GYlA5UpabfT2EZICICpJ5h/iI+i341gBmLiAFQOyTDT+/wQc
6MF9+Yw1Yy0t
-----END CERTIFICATE-----
`

func TestResolveSink(t *testing.T) {
	const ns = "shop"
	secrets := []*struct{ name, key, value string }{
		{"creds", "user", "u"}, {"creds", "pass", "p"}, {"creds", "token", "t"},
		{"tls", "ca.crt", testCA}, {"tls", "junk", "not a certificate"},
		{"creds", "crlf", "t\r\nX-Injected: 1"}, {"creds", "newline", "token\n"},
	}
	byName := map[string]map[string]string{}
	for _, s := range secrets {
		if byName[s.name] == nil {
			byName[s.name] = map[string]string{}
		}
		byName[s.name][s.key] = s.value
	}
	c := fake.NewClientBuilder()
	for name, data := range byName {
		c = c.WithObjects(builders.Secret(ns, name, data))
	}
	reader := c.Build()
	ref := func(name, key string) *logsv1alpha1.SecretKeySelector {
		return &logsv1alpha1.SecretKeySelector{Name: name, Key: key}
	}

	tests := []struct {
		name       string
		sink       *logsv1alpha1.SinkTarget
		wantReason string
	}{
		{name: "stdout", sink: builders.Sink(ns, "s").Stdout().Build()},
		{name: "no type", sink: builders.Sink(ns, "s").Build(), wantReason: logsv1alpha1.ReasonSinkInvalid},
		{name: "loki with basic auth", sink: builders.Sink(ns, "s").Loki("http://loki").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Loki.Auth = &logsv1alpha1.AuthSpec{Basic: &logsv1alpha1.BasicAuth{Username: *ref("creds", "user"), Password: *ref("creds", "pass")}}
		}).Build()},
		{name: "missing secret", sink: builders.Sink(ns, "s").Loki("http://loki").WithBearerToken("nope", "token").Build(),
			wantReason: logsv1alpha1.ReasonSecretNotFound},
		{name: "missing key", sink: builders.Sink(ns, "s").HTTP("http://h").WithBearerToken("creds", "nope").Build(),
			wantReason: logsv1alpha1.ReasonSecretKeyNotFound},
		{name: "header from missing key", sink: builders.Sink(ns, "s").HTTP("http://h").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.HTTP.Headers = []logsv1alpha1.HTTPHeader{{Name: "X", ValueFrom: ref("creds", "absent")}}
		}).Build(), wantReason: logsv1alpha1.ReasonSecretKeyNotFound},
		{name: "header from a Secret with CR/LF", sink: builders.Sink(ns, "s").HTTP("http://h").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.HTTP.Headers = []logsv1alpha1.HTTPHeader{{Name: "X-Key", ValueFrom: ref("creds", "crlf")}}
		}).Build(), wantReason: logsv1alpha1.ReasonSinkInvalid},
		{name: "bearer token with a trailing newline", sink: builders.Sink(ns, "s").Loki("http://loki").WithBearerToken("creds", "newline").Build(),
			wantReason: logsv1alpha1.ReasonSinkInvalid},
		{name: "pod labels that collide once sanitised", sink: builders.Sink(ns, "s").Loki("http://loki").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Loki.PodLabelsAsLabels = []string{"app.kubernetes.io/name", "app_kubernetes_io/name"}
		}).Build(), wantReason: logsv1alpha1.ReasonSinkInvalid},
		{name: "a pod label that collides with a static label", sink: builders.Sink(ns, "s").Loki("http://loki").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Loki.StaticLabels = map[string]string{"team": "a"}
			s.Spec.Loki.PodLabelsAsLabels = []string{"team"}
		}).Build(), wantReason: logsv1alpha1.ReasonSinkInvalid},
		{name: "raw stdout without the operator's consent", sink: builders.Sink(ns, "s").Stdout().With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Stdout.Format = logsv1alpha1.RecordFormatRaw
		}).Build(), wantReason: logsv1alpha1.ReasonOutsideOperatorLimits},
		{name: "insecureSkipVerify without the operator's consent", sink: builders.Sink(ns, "s").Loki("https://loki").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Loki.TLS = &logsv1alpha1.TLSSpec{InsecureSkipVerify: true}
		}).Build(), wantReason: logsv1alpha1.ReasonOutsideOperatorLimits},
		{name: "valid CA", sink: builders.Sink(ns, "s").Loki("https://loki").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Loki.TLS = &logsv1alpha1.TLSSpec{CA: ref("tls", "ca.crt")}
		}).Build()},
		{name: "CA that is not PEM", sink: builders.Sink(ns, "s").Loki("https://loki").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Loki.TLS = &logsv1alpha1.TLSSpec{CA: ref("tls", "junk")}
		}).Build(), wantReason: logsv1alpha1.ReasonInvalidTLS},
		{name: "otlp with headers, auth and a CA from Secrets", sink: builders.Sink(ns, "s").OTLP("https://otel:4317").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.OTLP.Headers = []logsv1alpha1.HTTPHeader{{Name: "x-key", ValueFrom: ref("creds", "token")}}
			s.Spec.OTLP.TLS = &logsv1alpha1.TLSSpec{CA: ref("tls", "ca.crt")}
		}).WithBearerToken("creds", "token").Build()},
		{name: "otlp header from a Secret with CR/LF", sink: builders.Sink(ns, "s").OTLP("http://otel").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.OTLP.Headers = []logsv1alpha1.HTTPHeader{{Name: "X-Key", ValueFrom: ref("creds", "crlf")}}
		}).Build(), wantReason: logsv1alpha1.ReasonSinkInvalid},
		{name: "otlp insecureSkipVerify without the operator's consent", sink: builders.Sink(ns, "s").OTLP("https://otel").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.OTLP.TLS = &logsv1alpha1.TLSSpec{InsecureSkipVerify: true}
		}).Build(), wantReason: logsv1alpha1.ReasonOutsideOperatorLimits},
		{name: "otlp CA that is not PEM", sink: builders.Sink(ns, "s").OTLP("https://otel").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.OTLP.TLS = &logsv1alpha1.TLSSpec{CA: ref("tls", "junk")}
		}).Build(), wantReason: logsv1alpha1.ReasonInvalidTLS},
		{name: "kafka with SASL and a CA from Secrets", sink: builders.Sink(ns, "s").Kafka("logs", "kafka:9093").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Kafka.SASL = &logsv1alpha1.KafkaSASL{Mechanism: "SCRAM-SHA-512", Username: *ref("creds", "user"), Password: *ref("creds", "pass")}
			s.Spec.Kafka.TLS = &logsv1alpha1.TLSSpec{CA: ref("tls", "ca.crt")}
		}).Build()},
		{name: "kafka SASL password from a missing key", sink: builders.Sink(ns, "s").Kafka("logs", "kafka:9093").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Kafka.SASL = &logsv1alpha1.KafkaSASL{Mechanism: "PLAIN", Username: *ref("creds", "user"), Password: *ref("creds", "absent")}
		}).Build(), wantReason: logsv1alpha1.ReasonSecretKeyNotFound},
		{name: "kafka insecureSkipVerify without the operator's consent", sink: builders.Sink(ns, "s").Kafka("logs", "kafka:9093").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Kafka.TLS = &logsv1alpha1.TLSSpec{InsecureSkipVerify: true}
		}).Build(), wantReason: logsv1alpha1.ReasonOutsideOperatorLimits},
		{name: "elasticsearch with an API key and a CA from Secrets", sink: builders.Sink(ns, "s").Elasticsearch("https://es:9200", "logs").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Elasticsearch.Auth = &logsv1alpha1.ElasticsearchAuth{APIKey: ref("creds", "token")}
			s.Spec.Elasticsearch.TLS = &logsv1alpha1.TLSSpec{CA: ref("tls", "ca.crt")}
		}).Build()},
		{name: "elasticsearch API key with a trailing newline", sink: builders.Sink(ns, "s").Elasticsearch("https://es:9200", "logs").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Elasticsearch.Auth = &logsv1alpha1.ElasticsearchAuth{APIKey: ref("creds", "newline")}
		}).Build(), wantReason: logsv1alpha1.ReasonSinkInvalid},
		{name: "elasticsearch insecureSkipVerify without the operator's consent", sink: builders.Sink(ns, "s").Elasticsearch("https://es:9200", "logs").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Elasticsearch.TLS = &logsv1alpha1.TLSSpec{InsecureSkipVerify: true}
		}).Build(), wantReason: logsv1alpha1.ReasonOutsideOperatorLimits},
		{name: "openSearch with an API key and a CA from Secrets", sink: builders.Sink(ns, "s").OpenSearch("https://os:9200", "logs").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.OpenSearch.Auth = &logsv1alpha1.OpenSearchAuth{APIKey: ref("creds", "token")}
			s.Spec.OpenSearch.TLS = &logsv1alpha1.TLSSpec{CA: ref("tls", "ca.crt")}
		}).Build()},
		{name: "openSearch API key with a trailing newline", sink: builders.Sink(ns, "s").OpenSearch("https://os:9200", "logs").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.OpenSearch.Auth = &logsv1alpha1.OpenSearchAuth{APIKey: ref("creds", "newline")}
		}).Build(), wantReason: logsv1alpha1.ReasonSinkInvalid},
		{name: "openSearch password from a missing key", sink: builders.Sink(ns, "s").OpenSearch("https://os:9200", "logs").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.OpenSearch.Auth = &logsv1alpha1.OpenSearchAuth{Basic: &logsv1alpha1.BasicAuth{Username: *ref("creds", "user"), Password: *ref("creds", "absent")}}
		}).Build(), wantReason: logsv1alpha1.ReasonSecretKeyNotFound},
		{name: "openSearch insecureSkipVerify without the operator's consent", sink: builders.Sink(ns, "s").OpenSearch("https://os:9200", "logs").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.OpenSearch.TLS = &logsv1alpha1.TLSSpec{InsecureSkipVerify: true}
		}).Build(), wantReason: logsv1alpha1.ReasonOutsideOperatorLimits},
		{name: "s3 with keys and a CA from Secrets", sink: builders.Sink(ns, "s").S3("https://s3.example", "logs").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.S3.AccessKeyID, s.Spec.S3.SecretAccessKey = ref("creds", "user"), ref("creds", "pass")
			s.Spec.S3.TLS = &logsv1alpha1.TLSSpec{CA: ref("tls", "ca.crt")}
		}).Build()},
		{name: "s3 secret key from a missing key", sink: builders.Sink(ns, "s").S3("https://s3.example", "logs").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.S3.AccessKeyID, s.Spec.S3.SecretAccessKey = ref("creds", "user"), ref("creds", "absent")
		}).Build(), wantReason: logsv1alpha1.ReasonSecretKeyNotFound},
		{name: "s3 insecureSkipVerify without the operator's consent", sink: builders.Sink(ns, "s").S3("https://s3.example", "logs").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.S3.TLS = &logsv1alpha1.TLSSpec{InsecureSkipVerify: true}
		}).Build(), wantReason: logsv1alpha1.ReasonOutsideOperatorLimits},
		{name: "client cert that is not a key pair", sink: builders.Sink(ns, "s").HTTP("https://h").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.HTTP.TLS = &logsv1alpha1.TLSSpec{Cert: ref("tls", "ca.crt"), Key: ref("tls", "junk")}
		}).Build(), wantReason: logsv1alpha1.ReasonInvalidTLS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := resolveSink(context.Background(), reader, tc.sink, sinkRules{})
			var se *stallError
			switch {
			case tc.wantReason == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantReason != "" && !errors.As(err, &se):
				t.Fatalf("want a stall with reason %s, got %v", tc.wantReason, err)
			case tc.wantReason != "" && se.reason != tc.wantReason:
				t.Fatalf("want reason %s, got %s (%s)", tc.wantReason, se.reason, se.message)
			}
		})
	}
}

func TestSecretNames(t *testing.T) {
	st := builders.Sink("ns", "s").HTTP("https://h").WithBearerToken("b", "t").With(func(s *logsv1alpha1.SinkTarget) {
		s.Spec.HTTP.Headers = []logsv1alpha1.HTTPHeader{{Name: "X", ValueFrom: &logsv1alpha1.SecretKeySelector{Name: "a", Key: "k"}}}
		s.Spec.HTTP.TLS = &logsv1alpha1.TLSSpec{CA: &logsv1alpha1.SecretKeySelector{Name: "b", Key: "ca"}}
	}).Build()
	got := secretNames(st)
	if len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("secretNames = %v, want [a b]", got)
	}
}

func TestPipelineConfig(t *testing.T) {
	p := builders.Pipeline("ns", "p", "out").WithSelector(map[string]string{"app": "x"}).With(func(p *logsv1alpha1.LogPipeline) {
		p.Spec.Rotation.Interval = metav1.Duration{Duration: time.Minute}
		p.Spec.StreamPool.MaxStreams = 7
		p.Spec.StartAt = logsv1alpha1.StartAtBeginning
		p.Spec.Containers.Include = []logsv1alpha1.ContainerGlob{"web*"}
		p.Spec.Containers.Exclude = []logsv1alpha1.ContainerGlob{"istio-proxy"}
	}).Build()
	cfg := pipelineConfig(p, nil, nil)
	if cfg.RotationInterval != time.Minute || cfg.MaxStreams != 7 || !cfg.StartFromBeginning ||
		cfg.Include[0] != "web*" || cfg.Exclude[0] != "istio-proxy" || cfg.Selector.MatchLabels["app"] != "x" {
		t.Fatalf("unexpected config %+v", cfg)
	}
	h1, _ := cfg.Hash()
	cfg.MaxStreams = 8
	h2, _ := cfg.Hash()
	if h1 == h2 {
		t.Fatal("the hash must change with the config")
	}
}

func TestValidateSelector(t *testing.T) {
	tests := []struct {
		name    string
		sel     *logsv1alpha1.LabelSelector
		wantErr bool
	}{
		{"none", nil, false},
		{"labels", logsv1alpha1.SelectorFromMap(map[string]string{"app": "x"}), false},
		{"bad operator", &logsv1alpha1.LabelSelector{MatchExpressions: []logsv1alpha1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}, true},
		{"bad value", logsv1alpha1.SelectorFromMap(map[string]string{"app": "not valid!"}), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := builders.Pipeline("ns", "p", "o").Build()
			p.Spec.Selector = tc.sel
			if err := validateSelector(p); (err != nil) != tc.wantErr {
				t.Fatalf("validateSelector() = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

// recordingReader records the Secrets read through it.
type recordingReader struct {
	client.Reader
	read map[string]bool
}

func (r *recordingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	r.read[key.Name] = true
	return r.Reader.Get(ctx, key, obj, opts...) //nolint:wrapcheck // a test double
}

// selfSigned returns a PEM certificate and key.
func selfSigned(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}))
}

// TestEverySecretThatIsReadIsWatched resolves sinks that use every Secret
// field, each from a Secret of its own, and checks that the Secrets read are
// exactly those the Secret index (secretNames) lists: a Secret that is read
// but not indexed would never trigger a reconcile when it changes.
func TestEverySecretThatIsReadIsWatched(t *testing.T) {
	const ns = "shop"
	cert, key := selfSigned(t)
	values := map[string]string{"v": "x", "ca": testCA, "cert": cert, "key": key}
	c := fake.NewClientBuilder()
	for _, name := range []string{"user", "pass", "token", "ca", "cert", "key", "h0", "h1"} {
		v := values["v"]
		if x, ok := values[name]; ok {
			v = x
		}
		c = c.WithObjects(builders.Secret(ns, name, map[string]string{"k": v}))
	}
	ref := func(name string) *logsv1alpha1.SecretKeySelector {
		return &logsv1alpha1.SecretKeySelector{Name: name, Key: "k"}
	}
	auth := func(basic bool) *logsv1alpha1.AuthSpec {
		if basic {
			return &logsv1alpha1.AuthSpec{Basic: &logsv1alpha1.BasicAuth{Username: *ref("user"), Password: *ref("pass")}}
		}
		return &logsv1alpha1.AuthSpec{BearerToken: ref("token")}
	}
	tlsSpec := &logsv1alpha1.TLSSpec{CA: ref("ca"), Cert: ref("cert"), Key: ref("key")}
	sinks := []*logsv1alpha1.SinkTarget{
		builders.Sink(ns, "loki-basic").Loki("https://loki").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Loki.Auth, s.Spec.Loki.TLS = auth(true), tlsSpec
		}).Build(),
		builders.Sink(ns, "loki-bearer").Loki("https://loki").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Loki.Auth = auth(false)
		}).Build(),
		builders.Sink(ns, "http").HTTP("https://h").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.HTTP.Auth, s.Spec.HTTP.TLS = auth(true), tlsSpec
			s.Spec.HTTP.Headers = []logsv1alpha1.HTTPHeader{{Name: "A", ValueFrom: ref("h0")}, {Name: "B", ValueFrom: ref("h1")}}
		}).Build(),
		builders.Sink(ns, "http-bearer").HTTP("https://h").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.HTTP.Auth = auth(false)
		}).Build(),
		builders.Sink(ns, "s3").S3("https://s3.example", "logs").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.S3.AccessKeyID, s.Spec.S3.SecretAccessKey = ref("user"), ref("pass")
			s.Spec.S3.TLS = tlsSpec
		}).Build(),
		builders.Sink(ns, "es-basic").Elasticsearch("https://es:9200", "logs").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Elasticsearch.Auth = &logsv1alpha1.ElasticsearchAuth{Basic: &logsv1alpha1.BasicAuth{Username: *ref("user"), Password: *ref("pass")}}
			s.Spec.Elasticsearch.TLS = tlsSpec
		}).Build(),
		builders.Sink(ns, "es-key").Elasticsearch("https://es:9200", "logs").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Elasticsearch.Auth = &logsv1alpha1.ElasticsearchAuth{APIKey: ref("token")}
		}).Build(),
		builders.Sink(ns, "os-basic").OpenSearch("https://os:9200", "logs").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.OpenSearch.Auth = &logsv1alpha1.OpenSearchAuth{Basic: &logsv1alpha1.BasicAuth{Username: *ref("user"), Password: *ref("pass")}}
			s.Spec.OpenSearch.TLS = tlsSpec
		}).Build(),
		builders.Sink(ns, "os-key").OpenSearch("https://os:9200", "logs").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.OpenSearch.Auth = &logsv1alpha1.OpenSearchAuth{APIKey: ref("token")}
		}).Build(),
		builders.Sink(ns, "kafka").Kafka("logs", "kafka:9093").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Kafka.SASL = &logsv1alpha1.KafkaSASL{Mechanism: "PLAIN", Username: *ref("user"), Password: *ref("pass")}
			s.Spec.Kafka.TLS = tlsSpec
		}).Build(),
		builders.Sink(ns, "otlp").OTLP("https://otel:4317").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.OTLP.Auth, s.Spec.OTLP.TLS = auth(true), tlsSpec
			s.Spec.OTLP.Headers = []logsv1alpha1.HTTPHeader{{Name: "A", ValueFrom: ref("h0")}, {Name: "B", ValueFrom: ref("h1")}}
		}).Build(),
	}
	secrets := c.Build()
	for _, st := range sinks {
		r := &recordingReader{Reader: secrets, read: map[string]bool{}}
		if _, err := resolveSink(context.Background(), r, st, sinkRules{allowRawStdout: true}); err != nil {
			t.Fatalf("%s: %v", st.Name, err)
		}
		var read []string
		for n := range r.read {
			read = append(read, n)
		}
		sort.Strings(read)
		if got := secretNames(st); !slices.Equal(read, got) {
			t.Errorf("%s: read Secrets %v, but the index lists %v", st.Name, read, got)
		}
	}
}

func TestResolveOTLP(t *testing.T) {
	const ns = "shop"
	reader := fake.NewClientBuilder().WithObjects(builders.Secret(ns, "creds", map[string]string{"token": "t0ken", "key": "k3y"})).Build()
	literal := "shop"
	st := builders.Sink(ns, "otel").OTLP("https://otel:4317").With(func(s *logsv1alpha1.SinkTarget) {
		s.Spec.OTLP.Protocol = logsv1alpha1.OTLPProtocolGRPC
		s.Spec.OTLP.Compression = logsv1alpha1.HTTPCompressionNone
		s.Spec.OTLP.Headers = []logsv1alpha1.HTTPHeader{{Name: "x-tenant", Value: &literal},
			{Name: "x-key", ValueFrom: &logsv1alpha1.SecretKeySelector{Name: "creds", Key: "key"}}}
		s.Spec.OTLP.ResourceAttributes = map[string]string{"k8s.cluster.name": "prod"}
	}).WithBearerToken("creds", "token").Build()
	cfg, err := resolveSink(context.Background(), reader, st, sinkRules{})
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.OTLP
	if cfg.Kind != "OTLP" || o == nil || o.URL != "https://otel:4317" || !o.GRPC || o.Gzip ||
		o.Headers["x-tenant"] != "shop" || o.Headers["x-key"] != "k3y" || o.Credentials.BearerToken != "t0ken" ||
		o.ResourceAttributes["k8s.cluster.name"] != "prod" {
		t.Fatalf("resolved %+v: %+v", cfg, o)
	}
}

func TestResolveKafka(t *testing.T) {
	const ns = "shop"
	reader := fake.NewClientBuilder().WithObjects(builders.Secret(ns, "creds", map[string]string{"user": "shipper", "pass": "s3cret"})).Build()
	st := builders.Sink(ns, "kafka").Kafka("logs-{namespace}", "kafka-0:9093", "kafka-1:9093").With(func(s *logsv1alpha1.SinkTarget) {
		s.Spec.Kafka.Key, s.Spec.Kafka.Compression = logsv1alpha1.KafkaKeyPod, "Zstd"
		s.Spec.Kafka.MaxMessageBytes = resource.MustParse("8Mi")
		s.Spec.Kafka.SASL = &logsv1alpha1.KafkaSASL{Mechanism: "SCRAM-SHA-256",
			Username: logsv1alpha1.SecretKeySelector{Name: "creds", Key: "user"}, Password: logsv1alpha1.SecretKeySelector{Name: "creds", Key: "pass"}}
		s.Spec.Kafka.TLS = &logsv1alpha1.TLSSpec{}
	}).Build()
	cfg, err := resolveSink(context.Background(), reader, st, sinkRules{})
	if err != nil {
		t.Fatal(err)
	}
	k := cfg.Kafka
	if cfg.Kind != "Kafka" || k == nil || len(k.Brokers) != 2 || k.Topic != "logs-{namespace}" || k.Key != "Pod" || k.Compression != "Zstd" || k.MaxMessageBytes != 8<<20 ||
		k.SASLMechanism != "SCRAM-SHA-256" || k.Credentials.Username != "shipper" || k.Credentials.Password != "s3cret" || k.TLS == nil {
		t.Fatalf("resolved %+v: %+v", cfg, k)
	}
}

func TestResolveElasticsearch(t *testing.T) {
	const ns = "shop"
	reader := fake.NewClientBuilder().WithObjects(builders.Secret(ns, "creds", map[string]string{"user": "u", "pass": "p", "key": "a2V5"})).Build()
	st := builders.Sink(ns, "es").Elasticsearch("https://es:9200", "logs-{namespace}-{date}").With(func(s *logsv1alpha1.SinkTarget) {
		s.Spec.Elasticsearch.Mode = logsv1alpha1.ElasticsearchModeIndex
		s.Spec.Elasticsearch.Auth = &logsv1alpha1.ElasticsearchAuth{Basic: &logsv1alpha1.BasicAuth{
			Username: logsv1alpha1.SecretKeySelector{Name: "creds", Key: "user"}, Password: logsv1alpha1.SecretKeySelector{Name: "creds", Key: "pass"}}}
	}).Build()
	cfg, err := resolveSink(context.Background(), reader, st, sinkRules{})
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Elasticsearch
	if cfg.Kind != "Elasticsearch" || e == nil || e.URL != "https://es:9200" || e.Index != "logs-{namespace}-{date}" || e.DataStream ||
		e.Credentials.Username != "u" || e.Credentials.Password != "p" || e.APIKey != "" {
		t.Fatalf("resolved %+v: %+v", cfg, e)
	}
}

func TestResolveOpenSearch(t *testing.T) {
	const ns = "shop"
	reader := fake.NewClientBuilder().WithObjects(builders.Secret(ns, "creds", map[string]string{"user": "u", "pass": "p", "token": "os_t0ken"})).Build()
	st := builders.Sink(ns, "os").OpenSearch("https://os:9200", "logs-{namespace}-{date}").With(func(s *logsv1alpha1.SinkTarget) {
		s.Spec.OpenSearch.Mode = logsv1alpha1.OpenSearchModeIndex
		s.Spec.OpenSearch.Auth = &logsv1alpha1.OpenSearchAuth{APIKey: &logsv1alpha1.SecretKeySelector{Name: "creds", Key: "token"}}
	}).Build()
	cfg, err := resolveSink(context.Background(), reader, st, sinkRules{})
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.OpenSearch
	if cfg.Kind != "OpenSearch" || o == nil || cfg.Elasticsearch != nil || o.URL != "https://os:9200" || o.Index != "logs-{namespace}-{date}" || o.DataStream ||
		o.APIKey != "os_t0ken" || o.Credentials.Username != "" {
		t.Fatalf("resolved %+v: %+v", cfg, o)
	}
	st.Spec.OpenSearch.Mode, st.Spec.OpenSearch.Auth = logsv1alpha1.OpenSearchModeDataStream, &logsv1alpha1.OpenSearchAuth{Basic: &logsv1alpha1.BasicAuth{
		Username: logsv1alpha1.SecretKeySelector{Name: "creds", Key: "user"}, Password: logsv1alpha1.SecretKeySelector{Name: "creds", Key: "pass"}}}
	if cfg, err = resolveSink(context.Background(), reader, st, sinkRules{}); err != nil {
		t.Fatal(err)
	}
	if o := cfg.OpenSearch; !o.DataStream || o.APIKey != "" || o.Credentials.Username != "u" || o.Credentials.Password != "p" {
		t.Fatalf("resolved %+v", o)
	}
}

func TestResolveS3(t *testing.T) {
	const ns = "shop"
	reader := fake.NewClientBuilder().WithObjects(builders.Secret(ns, "creds", map[string]string{"id": "AKIA", "key": "s3cret"})).Build()
	st := builders.Sink(ns, "s3").S3("http://minio:9000", "logs").With(func(s *logsv1alpha1.SinkTarget) {
		s.Spec.S3.Region, s.Spec.S3.Prefix, s.Spec.S3.PathStyle = "eu-west-1", "logs/{namespace}", true
		s.Spec.S3.Compression = logsv1alpha1.HTTPCompressionNone
		s.Spec.S3.AccessKeyID = &logsv1alpha1.SecretKeySelector{Name: "creds", Key: "id"}
		s.Spec.S3.SecretAccessKey = &logsv1alpha1.SecretKeySelector{Name: "creds", Key: "key"}
	}).Build()
	cfg, err := resolveSink(context.Background(), reader, st, sinkRules{})
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.S3
	if cfg.Kind != "S3" || o == nil || o.Endpoint != "http://minio:9000" || o.Bucket != "logs" || o.Region != "eu-west-1" || o.Prefix != "logs/{namespace}" ||
		!o.PathStyle || o.Gzip || o.Credentials.Username != "AKIA" || o.Credentials.Password != "s3cret" {
		t.Fatalf("resolved %+v: %+v", cfg, o)
	}
}
