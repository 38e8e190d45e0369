{{/*
Helpers of the log-capturer chart. The objects themselves are generated from
config/ by hack/chartgen (crds.yaml, operator.yaml, agent.yaml,
monitoring.yaml); these are the parts values decide.
*/}}

{{/* The labels Helm's objects carry besides those of config/. */}}
{{- define "log-capturer.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
{{- end }}

{{/* The image of the operator and the agents. */}}
{{- define "log-capturer.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* What the schema cannot say. */}}
{{- define "log-capturer.validate" -}}
{{- if eq .Release.Namespace "log-capturer-agents" }}
{{- fail "the release's namespace becomes the operator's, and log-capturer-agents is the node agents' own: install into another one, e.g. --namespace log-capturer-system" }}
{{- end }}
{{- end }}

{{/* The operator's flags that values set; none with the defaults. */}}
{{- define "log-capturer.operator.args" -}}
{{- with .Values.operator.memoryBudget }}
- --memory-budget={{ . }}
{{- end }}
{{- if .Values.metrics.insecure }}
- --metrics-insecure
{{- end }}
{{- if .Values.metrics.operatorCertSecret }}
- --metrics-cert-dir=/etc/log-capturer/metrics
{{- end }}
{{- with .Values.policy }}
{{- with .defaultSinkTypes }}
- --default-sink-types={{ join "," . }}
{{- end }}
{{- if .allowInsecureSkipVerify }}
- --allow-insecure-skip-verify
{{- end }}
{{- if .allowRawStdout }}
- --allow-raw-stdout
{{- end }}
{{- if not (kindIs "invalid" .maxStreamsPerNamespace) }}
- --max-streams-per-namespace={{ .maxStreamsPerNamespace }}
{{- end }}
{{- with .minRotationInterval }}
- --min-rotation-interval={{ . }}
{{- end }}
{{- with .fileQuotaPerNamespace }}
- --file-quota-per-namespace={{ . }}
{{- end }}
{{- with .fileQuotaTotal }}
- --file-quota-total={{ . }}
{{- end }}
{{- end }}
{{- range .Values.operator.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{- define "log-capturer.operator.volumeMounts" -}}
{{- if .Values.metrics.operatorCertSecret }}
- name: metrics-cert
  mountPath: /etc/log-capturer/metrics
  readOnly: true
{{- end }}
{{- end }}

{{- define "log-capturer.operator.volumes" -}}
{{- with .Values.metrics.operatorCertSecret }}
- name: metrics-cert
  secret:
    secretName: {{ . }}
{{- end }}
{{- end }}

{{/* The agents' flags that values set besides --memory-budget. */}}
{{- define "log-capturer.agent.args" -}}
{{- if .Values.metrics.insecure }}
- --metrics-insecure
{{- end }}
{{- if .Values.metrics.agentCertSecret }}
- --metrics-cert-dir=/etc/log-capturer/metrics
{{- end }}
{{- range .Values.agent.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{- define "log-capturer.agent.volumeMounts" -}}
{{- if .Values.metrics.agentCertSecret }}
- name: metrics-cert
  mountPath: /etc/log-capturer/metrics
  readOnly: true
{{- end }}
{{- end }}

{{- define "log-capturer.agent.volumes" -}}
{{- with .Values.metrics.agentCertSecret }}
- name: metrics-cert
  secret:
    secretName: {{ . }}
{{- end }}
{{- end }}
