package main

import (
	"errors"
	"fmt"
	"strings"
)

// Marker syntax: __B_<name>__ is a block of blocks, __V_<name>__ an
// expression of values.
const (
	blockPrefix  = "__B_"
	valuePrefix  = "__V_"
	markerSuffix = "__"
)

// block is the marker of the named block.
func block(name string) string { return blockPrefix + name + markerSuffix }

// value is the marker of the named value.
func value(name string) string { return valuePrefix + name + markerSuffix }

// values are the expressions that value markers stand for.
var values = map[string]string{
	"namespace":          "{{ .Release.Namespace }}",
	"image":              `{{ include "log-capturer.image" . }}`,
	"pullPolicy":         "{{ .Values.image.pullPolicy }}",
	"mode":               "{{ .Values.capture.mode }}",
	"operatorReplicas":   "{{ .Values.operator.replicas }}",
	"agentBudget":        "{{ .Values.agent.memoryBudget }}",
	"agentGoMemLimit":    "{{ .Values.agent.goMemLimit | quote }}",
	"agentPriorityClass": "{{ .Values.agent.priorityClassName | quote }}",
	"metricsScheme":      `{{ ternary "http" "https" .Values.metrics.insecure }}`,
}

// blocks are the template blocks that block markers stand for: key is the
// map key the marker was the value of ("" for a list element), pad the
// indent of its line.
var blocks = map[string]func(key, pad string) string{
	"labels": func(_, pad string) string {
		return pad + `{{- include "log-capturer.labels" . | nindent ` + fmt.Sprint(len(pad)) + " }}"
	},
	"crdAnnotations": func(_, pad string) string {
		return pad + "{{- if .Values.crds.keep }}\n" + pad + "helm.sh/resource-policy: keep\n" + pad + "{{- end }}"
	},
	"operatorResources":    toYAML(".Values.operator.resources"),
	"agentResources":       toYAML(".Values.agent.resources"),
	"agentNodeSelector":    withYAML(".Values.agent.nodeSelector"),
	"agentTolerations":     withYAML(".Values.agent.tolerations"),
	"agentHostAliases":     withYAML(".Values.agent.hostAliases"),
	"operatorNodeSelector": withYAML(".Values.operator.nodeSelector"),
	"operatorTolerations":  withYAML(".Values.operator.tolerations"),
	"operatorAffinity":     withYAML(".Values.operator.affinity"),
	"imagePullSecrets":     withYAML(".Values.image.pullSecrets"),
	"operatorArgs":         include("log-capturer.operator.args"),
	"operatorVolumeMounts": include("log-capturer.operator.volumeMounts"),
	"operatorVolumes":      include("log-capturer.operator.volumes"),
	"agentArgs":            include("log-capturer.agent.args"),
	"agentVolumeMounts":    include("log-capturer.agent.volumeMounts"),
	"agentVolumes":         include("log-capturer.agent.volumes"),
	"serviceMonitorLabels": withLines(".Values.metrics.serviceMonitor.labels"),
	"prometheusRuleLabels": withLines(".Values.metrics.prometheusRule.labels"),
}

// expandBlock is the text of block name for a marker at indent.
func expandBlock(name, key string, indent int) (string, error) {
	f, ok := blocks[name]
	if !ok {
		return "", fmt.Errorf("unknown block %q", name)
	}
	pad := strings.Repeat(" ", indent)
	if strings.HasPrefix(key, "zz-") {
		key = "" // a marker key of its own: only the block
	}
	return f(key, pad), nil
}

// toYAML is key: with the value's YAML below it.
func toYAML(expr string) func(key, pad string) string {
	return func(key, pad string) string {
		return pad + key + ":\n" + pad + "  {{- toYaml " + expr + " | nindent " + fmt.Sprint(len(pad)+2) + " }}"
	}
}

// withYAML is key: and the value's YAML when the value is not empty.
func withYAML(expr string) func(key, pad string) string {
	return func(key, pad string) string {
		return pad + "{{- with " + expr + " }}\n" + pad + key + ":\n" + pad + "  {{- toYaml . | nindent " + fmt.Sprint(len(pad)+2) + " }}\n" + pad + "{{- end }}"
	}
}

// withLines is the value's YAML at the marker's place, when not empty.
func withLines(expr string) func(key, pad string) string {
	return func(_, pad string) string {
		return pad + "{{- with " + expr + " }}\n" + pad + "{{- toYaml . | nindent " + fmt.Sprint(len(pad)) + " }}\n" + pad + "{{- end }}"
	}
}

// include is the named template's list elements at the marker's place.
func include(name string) func(key, pad string) string {
	return func(_, pad string) string {
		return pad + `{{- include "` + name + `" . | nindent ` + fmt.Sprint(len(pad)) + " }}"
	}
}

// templatize puts the markers into an object: the chart's labels, the
// release's namespace, and the fields the rules of its kind name.
func templatize(o object) error {
	if _, ok := getPath(o, []any{"metadata", "labels"}); !ok {
		setPath(o, []any{"metadata", "labels"}, map[string]any{})
	}
	setPath(o, []any{"metadata", "labels", "zz-labels"}, block("labels"))
	replaceNamespace(o)
	name, _ := getPath(o, []any{"metadata", "name"})
	rule, ok := rules[fmt.Sprintf("%v/%v", o["kind"], name)]
	if !ok {
		return nil
	}
	return rule(o)
}

// replaceNamespace puts the release's namespace wherever config/ says
// log-capturer-system.
func replaceNamespace(v any) any {
	switch t := v.(type) {
	case string:
		return strings.ReplaceAll(t, releaseNamespace, value("namespace"))
	case map[string]any:
		for k, e := range t {
			t[k] = replaceNamespace(e)
		}
	case []any:
		for i, e := range t {
			t[i] = replaceNamespace(e)
		}
	}
	return v
}

// rules template the fields of one object, by kind/name.
var rules = map[string]func(object) error{
	"Deployment/log-capturer": func(o object) error {
		pod := []any{"spec", "template", "spec"}
		c := at(pod, "containers", 0)
		return all(
			set(o, []any{"spec", "replicas"}, value("operatorReplicas")),
			imageAndResources(o, c, "operatorResources"),
			replaceIn(o, at(c, "args"), "--capture=auto", "--capture="+value("mode")),
			appendTo(o, at(c, "args"), block("operatorArgs")),
			appendTo(o, at(c, "volumeMounts"), block("operatorVolumeMounts")),
			appendTo(o, at(pod, "volumes"), block("operatorVolumes")),
			add(o, at(pod, "nodeSelector"), block("operatorNodeSelector")),
			add(o, at(pod, "tolerations"), block("operatorTolerations")),
			add(o, at(pod, "affinity"), block("operatorAffinity")),
			add(o, at(pod, "imagePullSecrets"), block("imagePullSecrets")),
		)
	},
	"DaemonSet/log-capturer-agent": func(o object) error {
		pod := []any{"spec", "template", "spec"}
		c := at(pod, "containers", 0)
		return all(
			imageAndResources(o, c, "agentResources"),
			replaceIn(o, at(c, "args"), "--memory-budget=96Mi", "--memory-budget="+value("agentBudget")),
			appendTo(o, at(c, "args"), block("agentArgs")),
			setEnv(o, at(c, "env"), "GOMEMLIMIT", value("agentGoMemLimit")),
			appendTo(o, at(c, "volumeMounts"), block("agentVolumeMounts")),
			appendTo(o, at(pod, "volumes"), block("agentVolumes")),
			set(o, at(pod, "nodeSelector"), block("agentNodeSelector")),
			set(o, at(pod, "tolerations"), block("agentTolerations")),
			set(o, at(pod, "priorityClassName"), value("agentPriorityClass")),
			add(o, at(pod, "hostAliases"), block("agentHostAliases")),
			add(o, at(pod, "imagePullSecrets"), block("imagePullSecrets")),
		)
	},
	"ServiceMonitor/log-capturer":        serviceMonitor,
	"ServiceMonitor/log-capturer-agents": serviceMonitor,
	"PrometheusRule/log-capturer": func(o object) error {
		return add(o, []any{"metadata", "labels", "zz-extra"}, block("prometheusRuleLabels"))
	},
}

// serviceMonitor templates the operator's and the agents' ServiceMonitors:
// the scheme follows metrics.insecure, the labels Prometheus selects by.
func serviceMonitor(o object) error {
	return all(
		set(o, []any{"spec", "endpoints", 0, "scheme"}, value("metricsScheme")),
		add(o, []any{"metadata", "labels", "zz-extra"}, block("serviceMonitorLabels")),
	)
}

// imageAndResources templates what the operator's and the agents'
// containers (at path c) share: the image, its pull policy, the resources.
func imageAndResources(o object, c []any, resources string) error {
	return all(
		set(o, at(c, "image"), value("image")),
		set(o, at(c, "imagePullPolicy"), value("pullPolicy")),
		set(o, at(c, "resources"), block(resources)),
	)
}

// at is path with more elements, never sharing path's array.
func at(path []any, more ...any) []any {
	return append(append([]any(nil), path...), more...)
}

// all is the first error of the steps.
func all(errs ...error) error { return errors.Join(errs...) }

// set replaces a field that must exist.
func set(o object, path []any, v any) error {
	if _, ok := getPath(o, path); !ok {
		return fmt.Errorf("%v: not in config/; update hack/chartgen's rules", path)
	}
	setPath(o, path, v)
	return nil
}

// add sets a field that must not exist yet.
func add(o object, path []any, v any) error {
	if _, ok := getPath(o, path); ok {
		return fmt.Errorf("%v: already in config/; update hack/chartgen's rules", path)
	}
	setPath(o, path, v)
	return nil
}

// appendTo appends an element to a list that must exist.
func appendTo(o object, path []any, v any) error {
	l, ok := getPath(o, path)
	list, isList := l.([]any)
	if !ok || !isList {
		return fmt.Errorf("%v: no list in config/; update hack/chartgen's rules", path)
	}
	setPath(o, path, append(list, v))
	return nil
}

// replaceIn replaces the string element old of a list.
func replaceIn(o object, path []any, old, repl string) error {
	l, _ := getPath(o, path)
	list, _ := l.([]any)
	for i, e := range list {
		if e == old {
			list[i] = repl
			return nil
		}
	}
	return fmt.Errorf("%v: no %q in config/; update hack/chartgen's rules", path, old)
}

// setEnv sets the value of the environment variable name.
func setEnv(o object, path []any, name, v string) error {
	l, _ := getPath(o, path)
	list, _ := l.([]any)
	for _, e := range list {
		if m, ok := e.(map[string]any); ok && m["name"] == name {
			if _, ok := m["value"]; !ok {
				return fmt.Errorf("%v: %s has no value", path, name)
			}
			m["value"] = v
			return nil
		}
	}
	return fmt.Errorf("%v: no %s in config/; update hack/chartgen's rules", path, name)
}

// getPath is the value at path (map keys and list indexes).
func getPath(v any, path []any) (any, bool) {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[k]; !ok {
				return nil, false
			}
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil, false
			}
			v = l[k]
		}
	}
	return v, true
}

// setPath sets the value at path, creating maps on the way.
func setPath(v any, path []any, val any) {
	for i, p := range path {
		last := i == len(path)-1
		switch k := p.(type) {
		case string:
			m := v.(map[string]any)
			if last {
				m[k] = val
				return
			}
			if _, ok := m[k]; !ok {
				m[k] = map[string]any{}
			}
			v = m[k]
		case int:
			l := v.([]any)
			if last {
				l[k] = val
				return
			}
			v = l[k]
		}
	}
}
