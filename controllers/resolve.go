package controllers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/controllers/internal/policy"
)

// secretReader reads the Secrets one SinkTarget references, each at most
// once per reconcile, and only those secretRefs enumerates: a field that is
// resolved but not enumerated (and so not watched) is refused, so it fails
// every test instead of going stale in production.
type secretReader struct {
	reader    client.Reader
	namespace string
	allowed   map[string]string // spec field -> Secret name
	secrets   map[string]*corev1.Secret
}

func newSecretReader(r client.Reader, st *logsv1alpha1.SinkTarget) *secretReader {
	s := &secretReader{reader: r, namespace: st.Namespace, allowed: map[string]string{}, secrets: map[string]*corev1.Secret{}}
	for _, ref := range secretRefs(st) {
		s.allowed[ref.field] = ref.ref.Name
	}
	return s
}

// value returns one key of a Secret. field names the referring spec field for
// the error message; the value itself never appears in an error.
func (s *secretReader) value(ctx context.Context, ref *logsv1alpha1.SecretKeySelector, sink, field string) ([]byte, error) {
	if name, ok := s.allowed[field]; !ok || name != ref.Name {
		return nil, fmt.Errorf("SinkTarget %q: %s is read but not listed by secretRefs, so its Secret would not be watched", sink, field)
	}
	sec, ok := s.secrets[ref.Name]
	if !ok {
		sec = &corev1.Secret{}
		err := s.reader.Get(ctx, types.NamespacedName{Namespace: s.namespace, Name: ref.Name}, sec)
		if apierrors.IsNotFound(err) {
			return nil, stallRechecked(logsv1alpha1.ReasonSecretNotFound,
				"Secret %q referenced by SinkTarget %q in %s does not exist.", ref.Name, sink, field)
		}
		if err != nil {
			return nil, fmt.Errorf("reading Secret %s/%s: %w", s.namespace, ref.Name, err)
		}
		s.secrets[ref.Name] = sec
	}
	if !secretAllows(sec, sink) {
		return nil, stallRechecked(logsv1alpha1.ReasonSecretNotAllowed,
			"Secret %q, which SinkTarget %q references in %s, does not allow that SinkTarget to use it: whoever owns the Secret adds the annotation %s with the SinkTarget's name (a comma-separated list, or \"*\" for every SinkTarget of the namespace). Creating a SinkTarget does not grant reading Secrets.",
			ref.Name, sink, field, logsv1alpha1.AnnotationSinkTargets)
	}
	v, ok := sec.Data[ref.Key]
	if !ok {
		return nil, stallRechecked(logsv1alpha1.ReasonSecretKeyNotFound,
			"Secret %q has no key %q, which SinkTarget %q references in %s.", ref.Name, ref.Key, sink, field)
	}
	return v, nil
}

// resolveSink turns a SinkTarget into the runtime's configuration, reading
// every Secret it references and checking TLS material.
// sinkRules are what the operator's admin allows SinkTargets (flags, until
// the tenant policy holds them).
type sinkRules struct {
	// allowRawStdout lets Stdout sinks write lines unescaped into the
	// operator's own log.
	allowRawStdout bool
	// allowInsecureSkipVerify lets sinks skip verifying the server's
	// certificate.
	allowInsecureSkipVerify bool
	// policy is the CapturePolicy of the SinkTarget's namespace, nil when
	// none applies.
	policy *logsv1alpha1.CapturePolicy
	// defaultSinkTypes are the sink types allowed where no policy applies;
	// empty allows every type.
	defaultSinkTypes []logsv1alpha1.PolicySinkType
}

// policyFor returns the CapturePolicy that applies to namespace ns, nil
// when none does.
func policyFor(ctx context.Context, c client.Reader, ns string) (*logsv1alpha1.CapturePolicy, error) {
	list := &logsv1alpha1.CapturePolicyList{}
	if err := c.List(ctx, list); err != nil {
		return nil, fmt.Errorf("listing CapturePolicies: %w", err)
	}
	if len(list.Items) == 0 {
		return nil, nil
	}
	n := &corev1.Namespace{}
	if err := c.Get(ctx, types.NamespacedName{Name: ns}, n); err != nil {
		return nil, fmt.Errorf("reading namespace %s: %w", ns, err)
	}
	p, _ := policy.Select(list.Items, n.Labels)
	return p, nil
}

func resolveSink(ctx context.Context, reader client.Reader, st *logsv1alpha1.SinkTarget, rules sinkRules) (capture.SinkConfig, error) {
	secrets := newSecretReader(reader, st)
	spec := &st.Spec
	cfg := capture.SinkConfig{
		Name:           st.Name,
		Namespace:      st.Namespace,
		Generation:     st.Generation,
		BatchMaxBytes:  spec.Batch.MaxBytes.Value(),
		BatchMaxWait:   spec.Batch.MaxWait.Duration,
		MinBackoff:     spec.Retry.MinBackoff.Duration,
		MaxBackoff:     spec.Retry.MaxBackoff.Duration,
		BufferMaxBytes: spec.Buffer.MaxBytes.Value(),
		WhenFull:       string(spec.Buffer.WhenFull),
	}
	if msg := policy.Check(rules.policy, st); msg != "" {
		// Namespace labels are not watched: look again now and then.
		return cfg, stallRechecked(logsv1alpha1.ReasonPolicyViolation, "%s", msg)
	}
	if p := rules.policy; p != nil {
		cfg.Egress = &capture.EgressPolicy{Policy: p.Name, AllowCIDRs: p.Spec.DestinationCIDRs}
	} else if msg := policy.CheckDefaults(rules.defaultSinkTypes, st); msg != "" {
		return cfg, stallRechecked(logsv1alpha1.ReasonOutsideOperatorLimits, "%s", msg)
	}
	if insecure := (spec.Loki != nil && spec.Loki.TLS != nil && spec.Loki.TLS.InsecureSkipVerify) ||
		(spec.HTTP != nil && spec.HTTP.TLS != nil && spec.HTTP.TLS.InsecureSkipVerify) ||
		(spec.OTLP != nil && spec.OTLP.TLS != nil && spec.OTLP.TLS.InsecureSkipVerify) ||
		(spec.Kafka != nil && spec.Kafka.TLS != nil && spec.Kafka.TLS.InsecureSkipVerify) ||
		(spec.Elasticsearch != nil && spec.Elasticsearch.TLS != nil && spec.Elasticsearch.TLS.InsecureSkipVerify) ||
		(spec.OpenSearch != nil && spec.OpenSearch.TLS != nil && spec.OpenSearch.TLS.InsecureSkipVerify) ||
		(spec.S3 != nil && spec.S3.TLS != nil && spec.S3.TLS.InsecureSkipVerify); insecure && !rules.allowInsecureSkipVerify {
		return cfg, stall(logsv1alpha1.ReasonOutsideOperatorLimits,
			"SinkTarget %q: tls.insecureSkipVerify would send its credentials to whoever answers, which the operator's admin does not allow (--allow-insecure-skip-verify); give the server's CA in tls.ca instead.", st.Name)
	}
	var err error
	switch spec.Type() {
	case logsv1alpha1.SinkTypeLoki:
		cfg.Kind = capture.SinkLoki
		cfg.Loki, err = resolveLoki(ctx, secrets, st.Name, spec.Loki)
	case logsv1alpha1.SinkTypeFile:
		cfg.Kind = capture.SinkFile
		f := spec.File
		cfg.File = &capture.FileConfig{
			Path:     f.Path,
			Raw:      f.Format == logsv1alpha1.RecordFormatRaw,
			MaxSize:  f.MaxSize.Value(),
			MaxFiles: int(f.MaxFiles),
			Compress: f.Compress == nil || *f.Compress,
		}
		if q := policyLimits(rules.policy).FileQuota; q != nil {
			cfg.File.NamespaceQuota, cfg.File.QuotaPolicy = q.Value(), rules.policy.Name
		}
	case logsv1alpha1.SinkTypeHTTP:
		cfg.Kind = capture.SinkHTTP
		cfg.HTTP, err = resolveHTTP(ctx, secrets, st.Name, spec.HTTP)
	case logsv1alpha1.SinkTypeOTLP:
		cfg.Kind = capture.SinkOTLP
		cfg.OTLP, err = resolveOTLP(ctx, secrets, st.Name, spec.OTLP)
	case logsv1alpha1.SinkTypeKafka:
		cfg.Kind = capture.SinkKafka
		cfg.Kafka, err = resolveKafka(ctx, secrets, st.Name, spec.Kafka)
	case logsv1alpha1.SinkTypeElasticsearch:
		cfg.Kind = capture.SinkElasticsearch
		cfg.Elasticsearch, err = resolveElasticsearch(ctx, secrets, st.Name, spec.Elasticsearch)
	case logsv1alpha1.SinkTypeOpenSearch:
		cfg.Kind = capture.SinkOpenSearch
		cfg.OpenSearch, err = resolveOpenSearch(ctx, secrets, st.Name, spec.OpenSearch)
	case logsv1alpha1.SinkTypeS3:
		cfg.Kind = capture.SinkS3
		cfg.S3, err = resolveS3(ctx, secrets, st.Name, spec.S3)
	case logsv1alpha1.SinkTypeStdout:
		cfg.Kind = capture.SinkStdout
		cfg.Stdout = &capture.StdoutConfig{Raw: spec.Stdout.Format == logsv1alpha1.RecordFormatRaw}
		if cfg.Stdout.Raw && !rules.allowRawStdout {
			return cfg, stall(logsv1alpha1.ReasonOutsideOperatorLimits,
				"SinkTarget %q: stdout.format Raw would write the containers' bytes unescaped (terminal escapes, forged log lines) into the operator's own log, which the operator's admin does not allow (--allow-raw-stdout); use format JSON, which escapes every line.", st.Name)
		}
	default:
		return cfg, stall(logsv1alpha1.ReasonSinkInvalid, "SinkTarget %q sets none of loki, file, http, stdout, otlp, kafka, elasticsearch, openSearch or s3.", st.Name)
	}
	return cfg, err
}

func resolveLoki(ctx context.Context, secrets *secretReader, sink string, l *logsv1alpha1.LokiSink) (*capture.LokiConfig, error) {
	out := &capture.LokiConfig{
		URL:               string(l.URL),
		TenantID:          l.TenantID,
		JSON:              l.Encoding == logsv1alpha1.LokiEncodingJSON,
		StaticLabels:      l.StaticLabels,
		PodLabelsAsLabels: l.PodLabelsAsLabels,
	}
	for _, m := range l.MetadataLabels {
		out.MetadataLabels = append(out.MetadataLabels, string(m))
	}
	if err := checkLokiLabels(sink, l); err != nil {
		return nil, err
	}
	var err error
	if out.Credentials, err = resolveAuth(ctx, secrets, sink, "spec.loki.auth", l.Auth); err != nil {
		return nil, err
	}
	if out.TLS, err = resolveTLS(ctx, secrets, sink, "spec.loki.tls", l.TLS); err != nil {
		return nil, err
	}
	return out, nil
}

func resolveHTTP(ctx context.Context, secrets *secretReader, sink string, h *logsv1alpha1.HTTPSink) (*capture.HTTPConfig, error) {
	out := &capture.HTTPConfig{
		URL:  string(h.URL),
		Gzip: h.Compression != logsv1alpha1.HTTPCompressionNone,
	}
	var err error
	if out.Headers, err = resolveHeaders(ctx, secrets, sink, "spec.http.headers", h.Headers); err != nil {
		return nil, err
	}
	if out.Credentials, err = resolveAuth(ctx, secrets, sink, "spec.http.auth", h.Auth); err != nil {
		return nil, err
	}
	if out.TLS, err = resolveTLS(ctx, secrets, sink, "spec.http.tls", h.TLS); err != nil {
		return nil, err
	}
	return out, nil
}

func resolveOTLP(ctx context.Context, secrets *secretReader, sink string, o *logsv1alpha1.OTLPSink) (*capture.OTLPConfig, error) {
	out := &capture.OTLPConfig{
		URL:                string(o.URL),
		GRPC:               o.Protocol == logsv1alpha1.OTLPProtocolGRPC,
		Gzip:               o.Compression != logsv1alpha1.HTTPCompressionNone,
		ResourceAttributes: o.ResourceAttributes,
	}
	var err error
	if out.Headers, err = resolveHeaders(ctx, secrets, sink, "spec.otlp.headers", o.Headers); err != nil {
		return nil, err
	}
	if out.Credentials, err = resolveAuth(ctx, secrets, sink, "spec.otlp.auth", o.Auth); err != nil {
		return nil, err
	}
	if out.TLS, err = resolveTLS(ctx, secrets, sink, "spec.otlp.tls", o.TLS); err != nil {
		return nil, err
	}
	return out, nil
}

func resolveKafka(ctx context.Context, secrets *secretReader, sink string, k *logsv1alpha1.KafkaSink) (*capture.KafkaConfig, error) {
	out := &capture.KafkaConfig{
		Brokers:         k.Brokers,
		Topic:           k.Topic,
		Key:             string(k.Key),
		Compression:     string(k.Compression),
		MaxMessageBytes: k.MaxMessageBytes.Value(),
	}
	if k.SASL != nil {
		out.SASLMechanism = string(k.SASL.Mechanism)
		u, err := secrets.value(ctx, &k.SASL.Username, sink, "spec.kafka.sasl.username")
		if err != nil {
			return nil, err
		}
		p, err := secrets.value(ctx, &k.SASL.Password, sink, "spec.kafka.sasl.password")
		if err != nil {
			return nil, err
		}
		out.Credentials = capture.Credentials{Username: string(u), Password: string(p)}
	}
	var err error
	if out.TLS, err = resolveTLS(ctx, secrets, sink, "spec.kafka.tls", k.TLS); err != nil {
		return nil, err
	}
	return out, nil
}

func resolveElasticsearch(ctx context.Context, secrets *secretReader, sink string, e *logsv1alpha1.ElasticsearchSink) (*capture.ElasticsearchConfig, error) {
	var basic *logsv1alpha1.BasicAuth
	var apiKey *logsv1alpha1.SecretKeySelector
	if e.Auth != nil {
		basic, apiKey = e.Auth.Basic, e.Auth.APIKey
	}
	return resolveBulk(ctx, secrets, sink, "spec.elasticsearch", &capture.ElasticsearchConfig{URL: string(e.URL), Index: e.Index,
		DataStream: e.Mode != logsv1alpha1.ElasticsearchModeIndex}, basic, apiKey, e.TLS)
}

func resolveOpenSearch(ctx context.Context, secrets *secretReader, sink string, o *logsv1alpha1.OpenSearchSink) (*capture.ElasticsearchConfig, error) {
	var basic *logsv1alpha1.BasicAuth
	var apiKey *logsv1alpha1.SecretKeySelector
	if o.Auth != nil {
		basic, apiKey = o.Auth.Basic, o.Auth.APIKey
	}
	return resolveBulk(ctx, secrets, sink, "spec.openSearch", &capture.ElasticsearchConfig{URL: string(o.URL), Index: o.Index,
		DataStream: o.Mode != logsv1alpha1.OpenSearchModeIndex}, basic, apiKey, o.TLS)
}

// resolveBulk reads the credentials and TLS of an Elasticsearch or
// OpenSearch sink (field is its spec field) into out.
func resolveBulk(ctx context.Context, secrets *secretReader, sink, field string, out *capture.ElasticsearchConfig,
	basic *logsv1alpha1.BasicAuth, apiKey *logsv1alpha1.SecretKeySelector, t *logsv1alpha1.TLSSpec) (*capture.ElasticsearchConfig, error) {
	if apiKey != nil {
		v, err := secrets.value(ctx, apiKey, sink, field+".auth.apiKey")
		if err != nil {
			return nil, err
		}
		if err := headerSafe(v, sink, field+".auth.apiKey", apiKey.Name); err != nil {
			return nil, err
		}
		out.APIKey = string(v)
	}
	if basic != nil {
		var err error
		if out.Credentials, err = resolveAuth(ctx, secrets, sink, field+".auth", &logsv1alpha1.AuthSpec{Basic: basic}); err != nil {
			return nil, err
		}
	}
	var err error
	if out.TLS, err = resolveTLS(ctx, secrets, sink, field+".tls", t); err != nil {
		return nil, err
	}
	return out, nil
}

func resolveS3(ctx context.Context, secrets *secretReader, sink string, o *logsv1alpha1.S3Sink) (*capture.S3Config, error) {
	out := &capture.S3Config{Endpoint: string(o.Endpoint), Bucket: o.Bucket, Region: o.Region, Prefix: o.Prefix,
		PathStyle: o.PathStyle, Gzip: o.Compression != logsv1alpha1.HTTPCompressionNone}
	if o.AccessKeyID != nil && o.SecretAccessKey != nil {
		id, err := secrets.value(ctx, o.AccessKeyID, sink, "spec.s3.accessKeyID")
		if err != nil {
			return nil, err
		}
		key, err := secrets.value(ctx, o.SecretAccessKey, sink, "spec.s3.secretAccessKey")
		if err != nil {
			return nil, err
		}
		out.Credentials = capture.Credentials{Username: string(id), Password: string(key)}
	}
	var err error
	if out.TLS, err = resolveTLS(ctx, secrets, sink, "spec.s3.tls", o.TLS); err != nil {
		return nil, err
	}
	return out, nil
}

// resolveHeaders resolves the literal and Secret values of a sink's
// headers; field is the headers' spec path, for messages.
func resolveHeaders(ctx context.Context, secrets *secretReader, sink, field string, hs []logsv1alpha1.HTTPHeader) (map[string]string, error) {
	var out map[string]string
	for i, hd := range hs {
		if out == nil {
			out = map[string]string{}
		}
		if hd.Value != nil {
			out[hd.Name] = *hd.Value
			continue
		}
		f := fmt.Sprintf("%s[%d].valueFrom", field, i)
		v, err := secrets.value(ctx, hd.ValueFrom, sink, f)
		if err != nil {
			return nil, err
		}
		if err := headerSafe(v, sink, f, hd.ValueFrom.Name); err != nil {
			return nil, err
		}
		out[hd.Name] = string(v)
	}
	return out, nil
}

func resolveAuth(ctx context.Context, secrets *secretReader, sink, field string, a *logsv1alpha1.AuthSpec) (capture.Credentials, error) {
	var c capture.Credentials
	if a == nil {
		return c, nil
	}
	if a.BearerToken != nil {
		v, err := secrets.value(ctx, a.BearerToken, sink, field+".bearerToken")
		if err != nil {
			return c, err
		}
		if err := headerSafe(v, sink, field+".bearerToken", a.BearerToken.Name); err != nil {
			return c, err
		}
		c.BearerToken = string(v)
	}
	if a.Basic != nil {
		u, err := secrets.value(ctx, &a.Basic.Username, sink, field+".basic.username")
		if err != nil {
			return c, err
		}
		p, err := secrets.value(ctx, &a.Basic.Password, sink, field+".basic.password")
		if err != nil {
			return c, err
		}
		c.Username, c.Password = string(u), string(p)
	}
	return c, nil
}

func resolveTLS(ctx context.Context, secrets *secretReader, sink, field string, t *logsv1alpha1.TLSSpec) (*capture.TLSConfig, error) {
	if t == nil {
		return nil, nil
	}
	out := &capture.TLSConfig{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	var err error
	if t.CA != nil {
		if out.CAPEM, err = secrets.value(ctx, t.CA, sink, field+".ca"); err != nil {
			return nil, err
		}
		if !x509.NewCertPool().AppendCertsFromPEM(out.CAPEM) {
			return nil, stallRechecked(logsv1alpha1.ReasonInvalidTLS,
				"%s.ca of SinkTarget %q (Secret %q key %q) holds no PEM certificate.", field, sink, t.CA.Name, t.CA.Key)
		}
	}
	if t.Cert != nil && t.Key != nil {
		if out.CertPEM, err = secrets.value(ctx, t.Cert, sink, field+".cert"); err != nil {
			return nil, err
		}
		if out.KeyPEM, err = secrets.value(ctx, t.Key, sink, field+".key"); err != nil {
			return nil, err
		}
		if _, err := tls.X509KeyPair(out.CertPEM, out.KeyPEM); err != nil {
			return nil, stallRechecked(logsv1alpha1.ReasonInvalidTLS,
				"%s.cert and %s.key of SinkTarget %q are not a valid PEM certificate and key pair: %v.", field, field, sink, err)
		}
	}
	return out, nil
}

// secretRef is one reference from a SinkTarget's spec to a Secret key.
type secretRef struct {
	// field is the spec path of the reference, as messages name it.
	field string
	ref   *logsv1alpha1.SecretKeySelector
}

// secretRefs enumerates every Secret reference of a SinkTarget. It is the
// one list both resolution (secretReader) and the Secret index
// (secretNames) use, so that a Secret that is read is also watched.
func secretRefs(st *logsv1alpha1.SinkTarget) []secretRef {
	var out []secretRef
	add := func(field string, ref *logsv1alpha1.SecretKeySelector) {
		if ref != nil {
			out = append(out, secretRef{field: field, ref: ref})
		}
	}
	addAuth := func(field string, a *logsv1alpha1.AuthSpec) {
		if a == nil {
			return
		}
		add(field+".bearerToken", a.BearerToken)
		if a.Basic != nil {
			add(field+".basic.username", &a.Basic.Username)
			add(field+".basic.password", &a.Basic.Password)
		}
	}
	addTLS := func(field string, t *logsv1alpha1.TLSSpec) {
		if t == nil {
			return
		}
		add(field+".ca", t.CA)
		if t.Cert != nil && t.Key != nil {
			add(field+".cert", t.Cert)
			add(field+".key", t.Key)
		}
	}
	if l := st.Spec.Loki; l != nil {
		addAuth("spec.loki.auth", l.Auth)
		addTLS("spec.loki.tls", l.TLS)
	}
	if h := st.Spec.HTTP; h != nil {
		addAuth("spec.http.auth", h.Auth)
		addTLS("spec.http.tls", h.TLS)
		for i, hd := range h.Headers {
			add(fmt.Sprintf("spec.http.headers[%d].valueFrom", i), hd.ValueFrom)
		}
	}
	if o := st.Spec.S3; o != nil {
		if o.AccessKeyID != nil && o.SecretAccessKey != nil {
			add("spec.s3.accessKeyID", o.AccessKeyID)
			add("spec.s3.secretAccessKey", o.SecretAccessKey)
		}
		addTLS("spec.s3.tls", o.TLS)
	}
	if e := st.Spec.Elasticsearch; e != nil {
		if e.Auth != nil {
			add("spec.elasticsearch.auth.apiKey", e.Auth.APIKey)
			if e.Auth.Basic != nil {
				add("spec.elasticsearch.auth.basic.username", &e.Auth.Basic.Username)
				add("spec.elasticsearch.auth.basic.password", &e.Auth.Basic.Password)
			}
		}
		addTLS("spec.elasticsearch.tls", e.TLS)
	}
	if o := st.Spec.OpenSearch; o != nil {
		if o.Auth != nil {
			add("spec.openSearch.auth.apiKey", o.Auth.APIKey)
			if o.Auth.Basic != nil {
				add("spec.openSearch.auth.basic.username", &o.Auth.Basic.Username)
				add("spec.openSearch.auth.basic.password", &o.Auth.Basic.Password)
			}
		}
		addTLS("spec.openSearch.tls", o.TLS)
	}
	if k := st.Spec.Kafka; k != nil {
		if k.SASL != nil {
			add("spec.kafka.sasl.username", &k.SASL.Username)
			add("spec.kafka.sasl.password", &k.SASL.Password)
		}
		addTLS("spec.kafka.tls", k.TLS)
	}
	if o := st.Spec.OTLP; o != nil {
		addAuth("spec.otlp.auth", o.Auth)
		addTLS("spec.otlp.tls", o.TLS)
		for i, hd := range o.Headers {
			add(fmt.Sprintf("spec.otlp.headers[%d].valueFrom", i), hd.ValueFrom)
		}
	}
	return out
}

// secretNames lists every Secret a SinkTarget references, sorted and unique.
// It backs the SinkTarget index that maps a Secret change to its users.
func secretNames(st *logsv1alpha1.SinkTarget) []string {
	set := map[string]struct{}{}
	for _, r := range secretRefs(st) {
		set[r.ref.Name] = struct{}{}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// pipelineConfig builds the runtime configuration of a pipeline from its spec
// and its resolved sinks.
func pipelineConfig(p *logsv1alpha1.LogPipeline, sinks []capture.SinkConfig, pol *logsv1alpha1.CapturePolicy) capture.PipelineConfig {
	cfg := capture.PipelineConfig{
		Namespace:          p.Namespace,
		Name:               p.Name,
		UID:                string(p.UID),
		PositionsInterval:  p.Spec.Positions.WriteInterval.Duration,
		PositionsRetention: p.Spec.Positions.Retention.Duration,
		RotationInterval:   p.Spec.Rotation.Interval.Duration,
		MaxStreams:         int(p.Spec.StreamPool.MaxStreams),
		StartFromBeginning: p.Spec.StartAt == logsv1alpha1.StartAtBeginning,
		PodLabels:          p.Spec.PodLabels,
		Sinks:              sinks,
		HealthWindow:       p.Spec.Health.Window.Duration,
		MaxLineBytes:       int(p.Spec.Lines.MaxSize.Value()),
	}
	if l := policyLimits(pol); l.MaxStreams != nil {
		cfg.NamespaceMaxStreams = int(*l.MaxStreams)
	}
	cfg.Selector = p.Spec.Selector.AsMeta()
	for _, g := range p.Spec.Containers.Include {
		cfg.Include = append(cfg.Include, string(g))
	}
	for _, g := range p.Spec.Containers.Exclude {
		cfg.Exclude = append(cfg.Exclude, string(g))
	}
	return cfg
}

// validateSelector checks that the selector parses (the schema checks it
// too; objects stored before it did may not).
func validateSelector(p *logsv1alpha1.LogPipeline) error {
	if p.Spec.Selector == nil {
		return nil
	}
	if _, err := metav1.LabelSelectorAsSelector(p.Spec.Selector.AsMeta()); err != nil {
		return stall(logsv1alpha1.ReasonInvalidSpec, "spec.selector is not a valid label selector: %v.", err)
	}
	return nil
}

// validateLimits refuses what the operator's admin does not allow.
func validateLimits(p *logsv1alpha1.LogPipeline, minRotation time.Duration, pol *logsv1alpha1.CapturePolicy) error {
	if l := policyLimits(pol); l.MinRotationInterval != nil {
		if d, m := p.Spec.Rotation.Interval.Duration, l.MinRotationInterval.Duration; d > 0 && d < m {
			return stallRechecked(logsv1alpha1.ReasonPolicyViolation,
				"spec.rotation.interval %s is shorter than the minimum of %s that CapturePolicy %q, which applies to namespace %q, sets (limits.minRotationInterval): every rotation reopens each selected container's log stream, a request to the API server and the kubelet.",
				d, m, pol.Name, p.Namespace)
		}
		return nil
	}
	if d := p.Spec.Rotation.Interval.Duration; minRotation > 0 && d > 0 && d < minRotation {
		return stall(logsv1alpha1.ReasonOutsideOperatorLimits,
			"spec.rotation.interval %s is shorter than the operator's minimum of %s (--min-rotation-interval): every rotation reopens each selected container's log stream, a request to the API server and the kubelet.",
			d, minRotation)
	}
	return nil
}

// policyLimits returns the policy's limits, empty when there are none.
func policyLimits(pol *logsv1alpha1.CapturePolicy) logsv1alpha1.PolicyLimits {
	if pol == nil || pol.Spec.Limits == nil {
		return logsv1alpha1.PolicyLimits{}
	}
	return *pol.Spec.Limits
}

// policyName is the name status shows for the policy that applies, empty
// when none does.
func policyName(pol *logsv1alpha1.CapturePolicy) string {
	if pol == nil {
		return ""
	}
	return pol.Name
}

// streamLimitSource says where the namespace's stream limit comes from, for
// status messages; empty when it is the operator's flag (the verdict's
// default).
func streamLimitSource(pol *logsv1alpha1.CapturePolicy) string {
	if policyLimits(pol).MaxStreams != nil {
		return fmt.Sprintf("CapturePolicy %q, limits.maxStreams", pol.Name)
	}
	return ""
}

// checkLokiLabels refuses label names that collide once pod label keys are
// sanitised: two pod labels, or a pod label and a static label, would
// otherwise silently overwrite each other.
func checkLokiLabels(sink string, l *logsv1alpha1.LokiSink) error {
	from := map[string]string{}
	for k := range l.StaticLabels {
		from[k] = "static label " + strconv.Quote(k)
	}
	for _, k := range l.PodLabelsAsLabels {
		name := capture.LokiLabelName(k)
		if other, ok := from[name]; ok {
			return stall(logsv1alpha1.ReasonSinkInvalid,
				"SinkTarget %q: pod label %q becomes the Loki label %q, which %s already sets; drop one of them.", sink, k, name, other)
		}
		from[name] = "pod label " + strconv.Quote(k)
	}
	return nil
}

// headerSafe refuses a Secret value that cannot go into an HTTP header: a
// control character (a CR or LF above all) would be refused at every send
// and retried forever, or split the request.
func headerSafe(v []byte, sink, field, secret string) error {
	for i, b := range v {
		if b < 0x20 && b != '\t' || b == 0x7f {
			return stallRechecked(logsv1alpha1.ReasonSinkInvalid,
				"The value of Secret %q that SinkTarget %q uses in %s has a control character (byte %d of %d, 0x%02x) and cannot be sent in an HTTP header; a trailing newline is the usual cause.",
				secret, sink, field, i+1, len(v), b)
		}
	}
	return nil
}

// secretAllows tells whether a Secret consents to being used by SinkTarget
// sink: its logs.capturer.dev/sink-targets annotation names it, or is "*".
func secretAllows(sec *corev1.Secret, sink string) bool {
	v, ok := sec.Annotations[logsv1alpha1.AnnotationSinkTargets]
	if !ok {
		return false
	}
	for name := range strings.SplitSeq(v, ",") {
		if name = strings.TrimSpace(name); name == "*" || name == sink {
			return true
		}
	}
	return false
}
