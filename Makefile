# log-capturer Makefile. Every tool is pinned and built from the Go module
# proxy into bin/; nothing is downloaded from anywhere else.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

LOCALBIN ?= $(CURDIR)/bin
ENVTEST_DIR ?= $(LOCALBIN)/k8s

CONTROLLER_TOOLS_VERSION ?= v0.23.0
KUSTOMIZE_VERSION ?= v5.8.2
GOLANGCI_LINT_VERSION ?= v2.15.0
HELM_VERSION ?= v4.3.2

CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
KUSTOMIZE ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)
HELM ?= $(LOCALBIN)/helm-$(HELM_VERSION)
IMG ?= log-capturer:dev

# Go test flags for `make test`; TEST_PKGS narrows the packages.
TEST_PKGS ?= ./...
TEST_FLAGS ?= -timeout 18m

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRDs and RBAC from the Go markers.
	$(CONTROLLER_GEN) rbac:roleName=log-capturer-manager crd paths="./api/..." paths="./controllers/..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: controller-gen ## Generate the DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: api-docs
api-docs: manifests ## Regenerate docs/api.md from the CRDs.
	go run ./hack/apidocs config/crd/bases docs/api.md

.PHONY: chart
chart: manifests kustomize ## Generate the Helm chart's templates (charts/log-capturer) from the kustomize output of config/, the source of dist/install.yaml too.
	rm -rf dist/.chart && mkdir -p dist/.chart
	$(KUSTOMIZE) build config/agent > dist/.chart/auto.yaml
	$(KUSTOMIZE) build config/default > dist/.chart/api.yaml
	$(KUSTOMIZE) build config/prometheus > dist/.chart/prometheus.yaml
	go run ./hack/chartgen -auto dist/.chart/auto.yaml -api dist/.chart/api.yaml -prometheus dist/.chart/prometheus.yaml \
		-dashboard config/grafana/log-capturer-dashboard.json -out charts/log-capturer
	rm -rf dist/.chart

.PHONY: verify
verify: manifests generate api-docs chart ## Fail when generated files (CRDs, RBAC, DeepCopy, docs/api.md, the chart's templates) are not committed.
	@git diff --exit-code -- config api docs/api.md charts || { echo "generated files differ: run 'make manifests generate api-docs chart' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- charts)" || { echo "the chart has files not committed: run 'make chart' and commit"; exit 1; }

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: test
test: envtest build-installer helm prometheus-crds ## Run every test against the source-built envtest control plane.
	KUBEBUILDER_ASSETS="$(ENVTEST_DIR)" HELM="$(HELM)" PROMETHEUS_CRDS="$(PROMETHEUS_CRDS)" go test $(TEST_FLAGS) $(TEST_PKGS)

SOAK_DURATION ?= 10m

.PHONY: soak
soak: envtest ## Soak the capture workers through the API and from the kubelet's files (SOAK_DURATION each, default 10m) and print rotations, loss, duplicates and slopes.
	KUBEBUILDER_ASSETS="$(ENVTEST_DIR)" SOAK_DURATION=$(SOAK_DURATION) go test -count=1 -timeout 0 ./capture/workers/ -run TestWorkers -v -args -ginkgo.label-filter=soak -ginkgo.v | grep -E '^(file )?soak |Passed|FAIL|ok '

.PHONY: bench
bench: envtest ## Run the benchmarks and print their numbers.
	KUBEBUILDER_ASSETS="$(ENVTEST_DIR)" go test -count=1 -run '^$$' -bench . -benchmem ./...
	KUBEBUILDER_ASSETS="$(ENVTEST_DIR)" LOG_CAPTURER_BENCH=1 go test -count=1 -timeout 15m ./test/operator/ -run TestOperator -v -args -ginkgo.label-filter=bench -ginkgo.v | grep -E '^bench|Passed|FAIL|ok '
	KUBEBUILDER_ASSETS="$(ENVTEST_DIR)" LOG_CAPTURER_BENCH=1 go test -count=1 -timeout 15m ./test/agent/ -run TestAgent -v -args -ginkgo.label-filter=bench -ginkgo.v | grep -E '^bench|Passed|FAIL|ok '
	$(MAKE) bench-peer

# The OpenTelemetry Collector the CRI file follower is measured against,
# built from the Go module proxy (hack/peerbench/otelcol-builder.yaml), and
# the peer kit's deterministic corpus (50 files of 20 MiB).
OTELCOL_VERSION := v0.165.0
OTELCOL_PEER := $(LOCALBIN)/otelcol-peer-$(OTELCOL_VERSION)
PEERBENCH_DIR := $(LOCALBIN)/peerbench

$(OTELCOL_PEER):
	mkdir -p $(PEERBENCH_DIR)
	GOBIN=$(PEERBENCH_DIR) go install go.opentelemetry.io/collector/cmd/builder@$(OTELCOL_VERSION)
	mkdir -p $(PEERBENCH_DIR)/otel/build
	sed 's|@PEERS@|$(PEERBENCH_DIR)|' hack/peerbench/otelcol-builder.yaml > $(PEERBENCH_DIR)/builder.yaml
	# Its go mod tidy fails here (the proxy refuses a test-only dependency of
	# the file exporter) after the sources are written; they build with -mod=mod.
	$(PEERBENCH_DIR)/builder --config $(PEERBENCH_DIR)/builder.yaml --skip-compilation || test -f $(PEERBENCH_DIR)/otel/build/main.go
	cd $(PEERBENCH_DIR)/otel/build && go build -mod=mod -trimpath -o $@ .

$(PEERBENCH_DIR)/pods/manifest.json:
	mkdir -p $(PEERBENCH_DIR)
	cd hack/peerbench/gen && go run . -mode pods -out $(PEERBENCH_DIR)/pods -files 50 -size 20MiB

# Where bench-peer builds peerbench and the collector keeps its state and
# writes its file exporter's output (removed after each run); the corpus
# stays read-only. PEERBENCH_FLAGS may pick sides, e.g.
# PEERBENCH_FLAGS=-sides=engine-null,otelcol-null.
PEERBENCH_STATE := $(LOCALBIN)/peerbench-state
PEERBENCH_FLAGS ?=

# The OpenTelemetry Collector the OTLP sink is tested against: the otlp
# receiver (HTTP and gRPC) and the file exporter, built once from the Go
# module proxy (hack/otelcol-otlp/builder.yaml) and cached under its version.
OTELCOL_OTLP := $(LOCALBIN)/otelcol-otlp-$(OTELCOL_VERSION)
OTELCOL_OTLP_DIR := $(LOCALBIN)/otelcol-otlp-build

.PHONY: otelcol-otlp
otelcol-otlp: $(OTELCOL_OTLP) ## Build the OpenTelemetry Collector of the OTLP sink's test (cached; several CPU-minutes the first time).

$(OTELCOL_OTLP):
	mkdir -p $(OTELCOL_OTLP_DIR)
	GOBIN=$(OTELCOL_OTLP_DIR) go install go.opentelemetry.io/collector/cmd/builder@$(OTELCOL_VERSION)
	sed 's|@OUT@|$(OTELCOL_OTLP_DIR)/src|' hack/otelcol-otlp/builder.yaml > $(OTELCOL_OTLP_DIR)/builder.yaml
	# As for the peer collector: the builder's go mod tidy fails here after
	# the sources are written; they build with -mod=mod.
	$(OTELCOL_OTLP_DIR)/builder --config $(OTELCOL_OTLP_DIR)/builder.yaml --skip-compilation || test -f $(OTELCOL_OTLP_DIR)/src/main.go
	cd $(OTELCOL_OTLP_DIR)/src && go build -mod=mod -trimpath -o $@.tmp . && mv $@.tmp $@

.PHONY: test-otlp
test-otlp: $(OTELCOL_OTLP) ## Run the OTLP sink against a real OpenTelemetry Collector (HTTP and gRPC).
	LOG_CAPTURER_OTELCOL=$(OTELCOL_OTLP) LOG_CAPTURER_REQUIRE_OTELCOL=1 go test -count=1 -timeout 10m -run 'TestOTLPCollector' -v ./capture/sinks/ | grep -E '^(=== RUN|--- |\s+otlp_|PASS|FAIL|ok )'

.PHONY: bench-peer
bench-peer: $(OTELCOL_PEER) $(PEERBENCH_DIR)/pods/manifest.json ## Read one CRI corpus with the CRI file follower, the capture engine (to a null sink, a File sink, a Loki receiver) and the OpenTelemetry Collector (to nop, to file), side by side; print the ratios and issue 14's goals.
	mkdir -p $(PEERBENCH_STATE)
	go build -o $(PEERBENCH_STATE)/peerbench ./hack/peerbench
	$(PEERBENCH_STATE)/peerbench -work $(PEERBENCH_DIR) -state $(PEERBENCH_STATE) -otelcol $(OTELCOL_PEER) \
		-config-null hack/peerbench/otelcol-null.yaml -config-file hack/peerbench/otelcol-file.yaml $(PEERBENCH_FLAGS)

.PHONY: lint
lint: golangci-lint ## Run golangci-lint with the repository's configuration.
	$(GOLANGCI_LINT) run ./...

##@ Build

.PHONY: build
build: ## Build bin/log-capturer (the operator; it links neither the demo nor any test double).
	CGO_ENABLED=0 go build -o $(LOCALBIN)/log-capturer .

.PHONY: build-demo
build-demo: ## Build bin/log-capturer-demo, the demo's own binary.
	CGO_ENABLED=0 go build -o $(LOCALBIN)/log-capturer-demo ./cmd/log-capturer-demo

DEMO_FLAGS ?=

.PHONY: demo
demo: build-demo envtest ## Run the operator end to end on a local control plane and a simulated node (Ctrl-C stops it).
	$(LOCALBIN)/log-capturer-demo --assets $(ENVTEST_DIR) $(DEMO_FLAGS)

.PHONY: build-installer
build-installer: manifests kustomize ## Write dist/install.yaml (CRDs, RBAC, the operator with --capture=auto and the node agent DaemonSet) and dist/install-api.yaml (the operator alone, reading through the API), with image $(IMG).
	mkdir -p dist
	rm -rf dist/.kustomize && mkdir -p dist/.kustomize && cp -r config dist/.kustomize/
	cd dist/.kustomize/config/manager && $(KUSTOMIZE) edit set image log-capturer=$(IMG)
	cd dist/.kustomize/config/agent && $(KUSTOMIZE) edit set image log-capturer=$(IMG)
	$(KUSTOMIZE) build dist/.kustomize/config/default > dist/install-api.yaml
	$(KUSTOMIZE) build dist/.kustomize/config/agent > dist/install.yaml
	rm -rf dist/.kustomize

.PHONY: image
image: ## Build an OCI image tarball dist/log-capturer.tar offline (no Docker daemon, no registry).
	mkdir -p dist
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o dist/log-capturer-linux-amd64 .
	go run ./hack/image --binary dist/log-capturer-linux-amd64 --tag $(IMG) --out dist/log-capturer.tar

.PHONY: run
run: ## Run the operator against the cluster of $$KUBECONFIG (install the CRDs first: make install).
	go run . operator --leader-elect=false --file-sink-root=$(CURDIR)/demo-output

.PHONY: install
install: manifests ## Install the CRDs into the cluster of $$KUBECONFIG.
	kubectl apply --server-side -f config/crd/bases

E2E_STATE ?= $(LOCALBIN)/e2e

.PHONY: e2e-images
e2e-images: image ## Build the e2e node's images (pause, the log writer, the operator) into $(E2E_STATE)-images.
	mkdir -p $(E2E_STATE)-images
	CGO_ENABLED=0 go build -trimpath -o $(E2E_STATE)-images/pause ./hack/e2e/pause
	CGO_ENABLED=0 go build -trimpath -o $(E2E_STATE)-images/logger ./hack/e2e/logger
	go run ./hack/image --binary $(E2E_STATE)-images/pause --entrypoint /pause --tag registry.k8s.io/pause:3.10.2 --out $(E2E_STATE)-images/pause.tar
	go run ./hack/image --binary $(E2E_STATE)-images/logger --entrypoint /logger --tag e2e.local/logger:dev --out $(E2E_STATE)-images/logger.tar
	cp dist/log-capturer.tar $(E2E_STATE)-images/log-capturer.tar

# The release an upgrade starts from: dist/install.yaml and the image as of
# the commit before the Helm chart. make e2e installs it, then upgrades to
# this tree's chart under load.
E2E_PREVIOUS ?= 8fe0d0e

.PHONY: e2e-previous
e2e-previous: kustomize ## Build the image and dist/install.yaml of E2E_PREVIOUS (git archive) into $(E2E_STATE)-previous.
	@git cat-file -e $(E2E_PREVIOUS)^{commit} 2>/dev/null || { echo "e2e: commit $(E2E_PREVIOUS) is not in this clone (a shallow clone?): fetch it or set E2E_PREVIOUS"; exit 1; }
	rm -rf $(E2E_STATE)-previous && mkdir -p $(E2E_STATE)-previous/src $(E2E_STATE)-images
	git archive $(E2E_PREVIOUS) | tar -x -C $(E2E_STATE)-previous/src
	cd $(E2E_STATE)-previous/src && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o ../log-capturer . && \
		go run ./hack/image --binary ../log-capturer --tag log-capturer:previous --out $(E2E_STATE)-images/log-capturer-previous.tar
	cd $(E2E_STATE)-previous/src/config/manager && $(KUSTOMIZE) edit set image log-capturer=log-capturer:previous
	cd $(E2E_STATE)-previous/src/config/agent && $(KUSTOMIZE) edit set image log-capturer=log-capturer:previous
	$(KUSTOMIZE) build $(E2E_STATE)-previous/src/config/agent > $(E2E_STATE)-previous/install.yaml
	rm -rf $(E2E_STATE)-previous/src

.PHONY: e2e
e2e: e2e-binaries e2e-images e2e-previous build-installer helm ## Run the product on a real single-node cluster built from source (root; tears it down after).
	E2E_STATE=$(E2E_STATE) E2E_BIN=$(ENVTEST_DIR) E2E_HELM=$(HELM) E2E_PREVIOUS_INSTALL=$(E2E_STATE)-previous/install.yaml hack/e2e/run.sh

##@ Tools

# The envtest control plane: kube-apiserver from k8s.io/kubernetes and etcd,
# built from the Go module proxy in the hack/envtest tools module.
ENVTEST_MOD := hack/envtest
ENVTEST_STAMP := $(ENVTEST_DIR)/.built-$(shell cat $(ENVTEST_MOD)/go.mod $(ENVTEST_MOD)/go.sum $(ENVTEST_MOD)/etcd/main.go | sha256sum | cut -c1-16)
K8S_LDFLAGS := -X k8s.io/component-base/version.gitVersion=v1.37.2 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37

.PHONY: envtest
envtest: $(ENVTEST_STAMP) ## Build kube-apiserver and etcd into bin/k8s (cached).

# The e2e node: kubelet, controller-manager, scheduler, kube-proxy and kubectl
# from the same tools module, containerd from hack/e2e/containerd.
E2E_MOD := hack/e2e/containerd
E2E_STAMP := $(ENVTEST_DIR)/.e2e-$(shell cat $(ENVTEST_MOD)/go.mod $(ENVTEST_MOD)/go.sum $(E2E_MOD)/go.mod $(E2E_MOD)/go.sum | sha256sum | cut -c1-16)

.PHONY: e2e-binaries
e2e-binaries: envtest $(E2E_STAMP) ## Build the e2e node's binaries into bin/k8s (cached).

$(E2E_STAMP):
	mkdir -p $(ENVTEST_DIR)
	cd $(ENVTEST_MOD) && for c in kubelet kube-controller-manager kube-scheduler kube-proxy kubectl; do \
		go build -ldflags "$(K8S_LDFLAGS)" -o $(ENVTEST_DIR)/$$c k8s.io/kubernetes/cmd/$$c || exit 1; done
	cd $(E2E_MOD) && CGO_ENABLED=0 go build -tags "no_btrfs no_devmapper no_zfs" -o $(ENVTEST_DIR)/ \
		github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr \
		github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
	rm -f $(ENVTEST_DIR)/.e2e-*
	touch $@

$(ENVTEST_STAMP):
	mkdir -p $(ENVTEST_DIR)
	cd $(ENVTEST_MOD) && go build -ldflags "$(K8S_LDFLAGS)" -o $(ENVTEST_DIR)/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
	cd $(ENVTEST_MOD) && go build -o $(ENVTEST_DIR)/etcd ./etcd
	rm -f $(ENVTEST_DIR)/.built-*
	touch $@

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN):
	mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(LOCALBIN)/controller-gen $@

.PHONY: kustomize
kustomize: $(KUSTOMIZE)
$(KUSTOMIZE):
	mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv $(LOCALBIN)/kustomize $@

.PHONY: helm
helm: $(HELM) ## Build Helm into bin/ (cached).
$(HELM):
	mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	mv $(LOCALBIN)/helm $@

# The Prometheus Operator's ServiceMonitor and PrometheusRule CRDs, generated
# from its API types (hack/promcrds) for the chart's server-side dry run.
PROMCRDS_MOD := hack/promcrds
PROMETHEUS_CRDS ?= $(LOCALBIN)/prometheus-crds
PROMCRDS_STAMP := $(PROMETHEUS_CRDS)/.built-$(shell cat $(PROMCRDS_MOD)/go.mod $(PROMCRDS_MOD)/go.sum | sha256sum | cut -c1-16)

.PHONY: prometheus-crds
prometheus-crds: $(PROMCRDS_STAMP) ## Generate the Prometheus Operator's CRDs into bin/prometheus-crds (cached).
$(PROMCRDS_STAMP): $(CONTROLLER_GEN)
	rm -rf $(PROMETHEUS_CRDS) && mkdir -p $(PROMETHEUS_CRDS)
	cd $(PROMCRDS_MOD) && $(CONTROLLER_GEN) crd:maxDescLen=0 paths=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1 output:crd:artifacts:config=$(PROMETHEUS_CRDS)
	touch $@

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT)
$(GOLANGCI_LINT):
	mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(LOCALBIN)/golangci-lint $@
