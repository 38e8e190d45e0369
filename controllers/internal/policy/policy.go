// Package policy decides which CapturePolicy applies to a namespace and
// whether a SinkTarget keeps to it. It is pure: the controllers hand it the
// policies, the namespace's labels and the SinkTarget.
package policy

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
)

// Select returns the policy that applies to a namespace with the given
// labels: of those whose namespaceSelector matches, the one whose name sorts
// first; nil when none does. A policy whose selector does not parse selects
// nothing and is reported in bad.
func Select(policies []logsv1alpha1.CapturePolicy, nsLabels map[string]string) (chosen *logsv1alpha1.CapturePolicy, bad []string) {
	sorted := slices.Clone(policies)
	slices.SortFunc(sorted, func(a, b logsv1alpha1.CapturePolicy) int { return strings.Compare(a.Name, b.Name) })
	for i := range sorted {
		sel, err := metav1.LabelSelectorAsSelector(sorted[i].Spec.NamespaceSelector.AsMeta())
		if err != nil {
			bad = append(bad, sorted[i].Name)
			continue
		}
		if chosen == nil && sel.Matches(labels.Set(nsLabels)) {
			chosen = &sorted[i]
		}
	}
	return chosen, bad
}

// Check returns "" when st keeps to p, or a sentence naming the policy and
// the rule it breaks. A nil policy allows everything.
func Check(p *logsv1alpha1.CapturePolicy, st *logsv1alpha1.SinkTarget) string {
	if p == nil {
		return ""
	}
	spec := &st.Spec
	t := spec.Type()
	if !slices.Contains(p.Spec.SinkTypes, logsv1alpha1.PolicySinkType(t)) {
		return fmt.Sprintf("CapturePolicy %q, which applies to namespace %q, does not allow %s sinks (allowed: %s).",
			p.Name, st.Namespace, t, list(p.Spec.SinkTypes))
	}
	var (
		rawURL   string
		hosts    []string
		insecure bool
	)
	switch {
	case spec.Loki != nil:
		rawURL, insecure = string(spec.Loki.URL), spec.Loki.TLS != nil && spec.Loki.TLS.InsecureSkipVerify
		if msg := checkTenant(p, st.Namespace, spec.Loki.TenantID); msg != "" {
			return msg
		}
	case spec.HTTP != nil:
		rawURL, insecure = string(spec.HTTP.URL), spec.HTTP.TLS != nil && spec.HTTP.TLS.InsecureSkipVerify
	case spec.OTLP != nil:
		rawURL, insecure = string(spec.OTLP.URL), spec.OTLP.TLS != nil && spec.OTLP.TLS.InsecureSkipVerify
	case spec.Elasticsearch != nil:
		rawURL, insecure = string(spec.Elasticsearch.URL), spec.Elasticsearch.TLS != nil && spec.Elasticsearch.TLS.InsecureSkipVerify
	case spec.OpenSearch != nil:
		rawURL, insecure = string(spec.OpenSearch.URL), spec.OpenSearch.TLS != nil && spec.OpenSearch.TLS.InsecureSkipVerify
	case spec.S3 != nil:
		rawURL, insecure = string(spec.S3.Endpoint), spec.S3.TLS != nil && spec.S3.TLS.InsecureSkipVerify
	case spec.Kafka != nil:
		insecure = spec.Kafka.TLS != nil && spec.Kafka.TLS.InsecureSkipVerify
		for _, b := range spec.Kafka.Brokers {
			host, _, err := net.SplitHostPort(b)
			if err != nil {
				host = b
			}
			hosts = append(hosts, strings.ToLower(host))
		}
	}
	if rawURL != "" {
		u, err := url.Parse(rawURL)
		host := ""
		if err == nil {
			host = strings.ToLower(u.Hostname())
		}
		hosts = append(hosts, host)
	}
	for _, host := range hosts {
		if len(p.Spec.DestinationHosts) == 0 {
			break
		}
		if !slices.ContainsFunc(p.Spec.DestinationHosts, func(g string) bool { return hostMatches(g, host) }) {
			return fmt.Sprintf("CapturePolicy %q, which applies to namespace %q, does not allow the destination host %q (allowed: %s).",
				p.Name, st.Namespace, host, strings.Join(p.Spec.DestinationHosts, ", "))
		}
	}
	if l := p.Spec.Limits; l != nil && l.MaxBufferBytes != nil && spec.Buffer.MaxBytes.Cmp(*l.MaxBufferBytes) > 0 {
		return fmt.Sprintf("CapturePolicy %q, which applies to namespace %q, allows at most %s of spec.buffer.maxBytes per sink (limits.maxBufferBytes); this SinkTarget asks for %s.",
			p.Name, st.Namespace, l.MaxBufferBytes.String(), spec.Buffer.MaxBytes.String())
	}
	if insecure && !p.Spec.AllowInsecureSkipVerify {
		return fmt.Sprintf("CapturePolicy %q, which applies to namespace %q, does not allow tls.insecureSkipVerify.", p.Name, st.Namespace)
	}
	return ""
}

// CheckDefaults returns "" when st's type is among the operator's default
// sink types (those of namespaces no policy selects; empty allows all), or
// a sentence saying who may allow it.
func CheckDefaults(types []logsv1alpha1.PolicySinkType, st *logsv1alpha1.SinkTarget) string {
	t := logsv1alpha1.PolicySinkType(st.Spec.Type())
	if len(types) == 0 || slices.Contains(types, t) {
		return ""
	}
	return fmt.Sprintf("No CapturePolicy applies to namespace %q, so the operator's default sink types apply (--default-sink-types: %s), which leave %s sinks to the cluster admin; a CapturePolicy that selects the namespace may allow them.",
		st.Namespace, list(types), t)
}

func checkTenant(p *logsv1alpha1.CapturePolicy, namespace, tenant string) string {
	if len(p.Spec.LokiTenantIDs) == 0 {
		return ""
	}
	for _, g := range p.Spec.LokiTenantIDs {
		if ok, err := path.Match(strings.ReplaceAll(g, "{namespace}", namespace), tenant); err == nil && ok {
			return ""
		}
	}
	shown := tenant
	if shown == "" {
		shown = "(none)"
	}
	return fmt.Sprintf("CapturePolicy %q, which applies to namespace %q, does not allow the Loki tenant ID %s (allowed: %s, where {namespace} is %q).",
		p.Name, namespace, shown, strings.Join(p.Spec.LokiTenantIDs, ", "), namespace)
}

// hostMatches matches a host against a glob label by label: '*' never
// crosses a dot, so "*.monitoring.svc" matches "loki.monitoring.svc" and
// not "a.b.monitoring.svc".
func hostMatches(glob, host string) bool {
	gl, hl := strings.Split(strings.ToLower(glob), "."), strings.Split(host, ".")
	if len(gl) != len(hl) || host == "" {
		return false
	}
	for i := range gl {
		if ok, err := path.Match(gl[i], hl[i]); err != nil || !ok {
			return false
		}
	}
	return true
}

func list(ts []logsv1alpha1.PolicySinkType) string {
	if len(ts) == 0 {
		return "none"
	}
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}
