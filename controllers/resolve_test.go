package controllers

import (
	"context"
	"errors"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
		{name: "valid CA", sink: builders.Sink(ns, "s").Loki("https://loki").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Loki.TLS = &logsv1alpha1.TLSSpec{CA: ref("tls", "ca.crt")}
		}).Build()},
		{name: "CA that is not PEM", sink: builders.Sink(ns, "s").Loki("https://loki").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.Loki.TLS = &logsv1alpha1.TLSSpec{CA: ref("tls", "junk")}
		}).Build(), wantReason: logsv1alpha1.ReasonInvalidTLS},
		{name: "client cert that is not a key pair", sink: builders.Sink(ns, "s").HTTP("https://h").With(func(s *logsv1alpha1.SinkTarget) {
			s.Spec.HTTP.TLS = &logsv1alpha1.TLSSpec{Cert: ref("tls", "ca.crt"), Key: ref("tls", "junk")}
		}).Build(), wantReason: logsv1alpha1.ReasonInvalidTLS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := resolveSink(context.Background(), newSecretReader(reader, ns), tc.sink)
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
	cfg := pipelineConfig(p, nil)
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
		sel     *metav1.LabelSelector
		wantErr bool
	}{
		{"none", nil, false},
		{"labels", &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}, false},
		{"bad operator", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}, true},
		{"bad value", &metav1.LabelSelector{MatchLabels: map[string]string{"app": "not valid!"}}, true},
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
