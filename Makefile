# userservice — every developer and CI command. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

include hack/versions.env

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
TOOLS_DIR := $(CURDIR)/.cache/tools
# envtest convention: a folder holding kube-apiserver, etcd and kubectl. An existing one is reused.
KUBEBUILDER_ASSETS ?= $(TOOLS_DIR)/k8s/$(K8S_VERSION)-linux-amd64
export KUBEBUILDER_ASSETS
export PATH := $(TOOLS_DIR)/bin:$(BIN):$(PATH)
# Go keeps its own module and build caches (go env GOMODCACHE GOCACHE), so a machine that built the tools once
# reuses them from any clone; npm's downloads for clients/ts are cached beside the tools.
export npm_config_cache ?= $(CURDIR)/.cache/npm
PYTEST := $(BIN)/pytest

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]' -e clients/python
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## create the virtualenv with the pinned dependencies

.PHONY: constraints
constraints: ## re-resolve pyproject.toml's pins and their dependencies into constraints.txt (then commit it)
	rm -rf .cache/constraints-venv
	$(PYTHON) -m venv .cache/constraints-venv
	.cache/constraints-venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]' -e clients/python
	{ sed -n '/^#/p' constraints.txt; .cache/constraints-venv/bin/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .cache/constraints-venv

.PHONY: tools
tools: ## build or find kube-apiserver, etcd, kubectl, helm, buf, protoc-gen-go(-grpc), kubeconform (cached in .cache/tools)
	bash hack/tools.sh

.PHONY: cluster-tools
cluster-tools: ## also build what the one-node cluster needs: kubelet, scheduler, proxy, metrics-server, Prometheus, promtool, prometheus-adapter
	bash hack/tools.sh cluster

.PHONY: run
run: venv ## serve REST on :8080, gRPC on :50051, health and metrics on :9090, on loopback without authentication (throwaway embedded PostgreSQL unless DATABASE_URL is set)
	AUTH_MODE=none HTTP_HOST=127.0.0.1 GRPC_HOST=127.0.0.1 MANAGEMENT_HOST=127.0.0.1 \
	$(BIN)/userservice serve $(if $(DATABASE_URL),,--embedded-postgres $(CURDIR)/.data/postgres)

.PHONY: migrate
migrate: venv ## apply schema migrations to DATABASE_URL
	$(BIN)/userservice migrate

# clients/ts's packages (protoc-gen-es for proto-generate, TypeScript and Connect for its example) from its lockfile.
clients/ts/node_modules/.package-lock.json: clients/ts/package.json clients/ts/package-lock.json
	npm ci --prefix clients/ts --no-audit --no-fund
	touch $@

.PHONY: ts-deps
ts-deps: clients/ts/node_modules/.package-lock.json ## install clients/ts's npm packages from its lockfile

.PHONY: proto-generate
proto-generate: venv tools ts-deps ## regenerate the Python, Go and TypeScript code from proto/ with buf (committed)
	bash hack/proto-generate.sh

# The released API contract: `make lint` fails a proto change that would break a client built against it
# (buf breaking: proto/buf.yaml's rules). Moved on purpose, by proto-baseline, when a version of the API ships; a breaking
# change needs a new package version (userservice.v2) beside the old one instead.
PROTO_BASELINE := breaking-baseline.json

.PHONY: proto-baseline
proto-baseline: venv tools ## record proto/ as the released contract `make lint` checks against (refused when it breaks the last one)
	cd proto && buf breaking --against $(PROTO_BASELINE)
	cd proto && buf build --exclude-source-info -o -#format=json | $(BIN)/python -m json.tool --indent 1 > $(PROTO_BASELINE).new
	mv proto/$(PROTO_BASELINE).new proto/$(PROTO_BASELINE)

.PHONY: docs
docs: venv ## regenerate the reference docs (settings, user fields, the CRD) and the chart's dashboard, alert rules and adapter rule
	$(BIN)/python -m hack.docgen
	$(BIN)/python hack/gen-dashboard.py

.PHONY: lint
lint: venv tools ## ruff, mypy, the import contracts (import-linter), buf lint and buf breaking against the released contract
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	cd proto && buf lint
	cd proto && buf breaking --against $(PROTO_BASELINE)

.PHONY: test
test: venv tools ts-deps ## unit, integration (PostgreSQL, kube-apiserver), stateful, chart and client tests
	$(PYTEST) tests/unit tests/integration tests/stateful tests/chart

.PHONY: test-unit
test-unit: venv ts-deps ## pure-function tests (and the generated-code check)
	$(PYTEST) tests/unit

.PHONY: test-integration
test-integration: venv tools ts-deps ## tests against real PostgreSQL, gRPC/HTTP servers and kube-apiserver
	$(PYTEST) tests/integration

.PHONY: test-chart
test-chart: venv tools ## helm lint/template/kubeconform and helm install on a real kube-apiserver
	$(PYTEST) tests/chart

IMAGE ?= userservice:dev
export IMAGE

.PHONY: build
build: ## build the container image with a real Docker engine (starts dockerd and makes a local base if needed)
	bash hack/build-image.sh

.PHONY: test-e2e
test-e2e: venv cluster-tools build ## the image against PostgreSQL, then the one-node cluster end to end
	$(PYTEST) tests/e2e

.PHONY: cluster-up
cluster-up: cluster-tools build ## a real one-node Kubernetes from parts on this machine (root; state in .cache/cluster)
	bash hack/cluster.sh up

.PHONY: cluster-down
cluster-down: ## stop the one-node cluster and remove everything it set up
	bash hack/cluster.sh down

.PHONY: bench
bench: venv tools ## benchmarks: ratios against baselines measured in the same run (bench/results/), then the README's table
	$(BIN)/python -m bench
	$(BIN)/python -m bench.report --readme

.PHONY: kube-up
kube-up: venv tools ## throwaway kube-apiserver + etcd + controller-manager with the CRD; writes .data/kube/kubeconfig
	$(BIN)/python -m tests.support.kube $(CURDIR)/.data/kube/kubeconfig

# --- kind (people with Docker and kind: go install sigs.k8s.io/kind@v$(KIND_VERSION)) ---------------------
KIND ?= kind
KIND_CLUSTER ?= userservice
KUBECTL ?= $(shell command -v kubectl 2>/dev/null || echo $(KUBEBUILDER_ASSETS)/kubectl)
RELEASE ?= userservice-operator
RELEASE_NAMESPACE ?= userservice-system

.PHONY: kind-up
kind-up: ## create the kind cluster of deploy/kind/cluster.yaml (needs Docker and kind)
	$(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || \
		$(KIND) create cluster --name $(KIND_CLUSTER) --config deploy/kind/cluster.yaml --wait 120s

.PHONY: kind-load
kind-load: build ## load the image (IMAGE) into the kind cluster's nodes
	$(KIND) load docker-image $(IMAGE) --name $(KIND_CLUSTER)

.PHONY: deploy
deploy: ## install the operator chart, a dev PostgreSQL and the sample UserService into the current kubectl context
	helm upgrade --install $(RELEASE) charts/userservice-operator --namespace $(RELEASE_NAMESPACE) --create-namespace \
		--set image.repository=$(firstword $(subst :, ,$(IMAGE))) --set image.tag=$(lastword $(subst :, ,$(IMAGE))) \
		--wait --timeout 5m
	$(KUBECTL) apply -k deploy/postgres/
	$(KUBECTL) rollout status statefulset/postgres --timeout=5m
	$(KUBECTL) apply -f deploy/samples/
	$(KUBECTL) wait --for=condition=Ready userservice/users --timeout=5m

.PHONY: undeploy
undeploy: ## remove the sample UserService, the dev PostgreSQL and the operator release
	$(KUBECTL) delete --ignore-not-found -f deploy/samples/
	$(KUBECTL) delete --ignore-not-found -k deploy/postgres/
	$(KUBECTL) delete --ignore-not-found pvc -l app.kubernetes.io/name=postgres
	helm uninstall $(RELEASE) --namespace $(RELEASE_NAMESPACE) --ignore-not-found --wait

.PHONY: clean
clean: ## remove the virtualenv, caches and data (keeps the tools cache)
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache .hypothesis
