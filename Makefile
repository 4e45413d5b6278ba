# mlmodel-operator — the two commands a newcomer needs are `make demo` and `make test`.
# Everything else here is a building block of those two.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export PATH := $(HOME)/.local/bin:$(PATH)
export UV_LINK_MODE := copy
# ONNX Runtime's telemetry off in every process make starts (tests, benches, the demo): it
# would send events off the machine (mlmodel_artifact/__init__.py).
export ORT_DISABLE_TELEMETRY := 1
RUN := uv run --frozen

.PHONY: help setup browser test test-unit test-cluster lint demo bench bench-server bench-startup bench-startup-node images images-down cluster-up cluster-down
.PHONY: devcluster-build devcluster-build-node demo-down e2e-deps kind-build test-kind

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 20

setup: ## install uv (from PyPI) and the locked Python workspace
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet --user uv
	@# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set, every process would re-compile scipy
	@# and scikit-learn from source on import (seconds per server process the tests start)
	uv sync --frozen --all-packages --compile-bytecode

test-unit: setup browser ## tests that need no cluster, no containers (~5 min on 2 cores)
	$(RUN) pytest -m "not cluster and not node and not docker and not prometheus" tests

# --durations: the slowest tests, printed at the end: where the CI time budget goes.
test: setup browser images devcluster-build-node e2e-deps kind-build ## the whole suite: every tier that exists, then the kind tier (builds the images first)
	$(RUN) pytest --durations=30 tests
	$(RUN) pytest --durations=10 --cluster=kind $(KIND_TESTS)

# On kind (pytest --cluster=kind): the operator's cluster tier (but its fake_pods tests, which
# need devcluster's kwok nodes) and the e2e serving test. devcluster/kind/README.md.
KIND_TESTS := tests/cluster/mlmodel tests/e2e/test_e2e_serving.py

test-kind: setup images kind-build ## the kind tier alone: a kind cluster (control plane + worker) from local builds
	$(RUN) pytest --cluster=kind $(KIND_TESTS)

browser: ## Debian's headless Chromium, for the test that renders the server's /docs offline
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

lint: setup ## ruff and mypy --strict over the packages
	$(RUN) ruff check artifact trainer model-server operator devcluster tests bench
	$(RUN) ruff format --check artifact trainer model-server operator devcluster
	$(RUN) mypy artifact/mlmodel_artifact trainer/mlmodel_trainer model-server/model_server operator/mlmodel_operator devcluster/devcluster

demo: setup ## the whole project end to end on devcluster's real node (or KUBECONFIG's cluster)
	$(RUN) python -m devcluster.stack.demo up

demo-down: setup ## remove everything `make demo` made (the devcluster it started, the image engine)
	$(RUN) python -m devcluster.stack.demo down

e2e-deps: setup ## upstream Prometheus for the monitoring e2e test, built once into the cache (Debian's lacks Kubernetes SD)
	$(RUN) python -m devcluster.stack.prometheus build

images: setup ## build mlmodel-server:dev, mlmodel-server:slim and mlmodel-operator:dev on a private Docker engine
	$(RUN) python -m devcluster.images build server server-slim operator

images-down: ## stop the private Docker engine (images stay cached)
	$(RUN) python -m devcluster.images down

# --- devcluster: a real Kubernetes built from upstream (binaries cached in ~/.cache/mlmodel-operator)
DEVCLUSTER := $(RUN) python -m devcluster
CLUSTER_FAKE_NODES ?= 2

devcluster-build: setup ## build kube-apiserver/controller-manager/scheduler/kubectl + kwok; apt etcd
	$(DEVCLUSTER) build

devcluster-build-node: setup ## also kubelet, kube-proxy, metrics-server (for `up --node`)
	$(DEVCLUSTER) build --node

cluster-up: devcluster-build$(if $(CLUSTER_NODE),-node) ## start the local cluster (CLUSTER_FAKE_NODES kwok nodes; CLUSTER_NODE=1 adds the real node)
	$(DEVCLUSTER) up --fake-nodes $(CLUSTER_FAKE_NODES)$(if $(CLUSTER_NODE), --node)
	@$(DEVCLUSTER) env

cluster-down: setup ## stop every process cluster-up started
	$(DEVCLUSTER) down

kind-build: setup ## kind (pinned) and the node image kindest/node:v1.36.2 on the private engine, from local builds
	$(RUN) python -m devcluster.kube.kindnode build

# --- benchmarks: timings live here, never in `make test`
BENCH_TARGETS := $(shell sed -nE 's/^(bench-[a-zA-Z0-9_-]+):.*/\1/p' $(MAKEFILE_LIST))

bench: $(BENCH_TARGETS) ## run every bench-* target

bench-server: setup ## model server (HTTP, gRPC) vs seed Flask/gunicorn, MLServer, KServe, HTTP/gRPC floors (~20 min)
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(RUN) python -m bench.server

bench-startup: setup bench-startup-node ## cold start: process start -> ready and RSS per worker, ours (model.onnx / converting) vs MLServer, KServe (~4 min, after bench-startup-node)
	$(RUN) python -m bench.startup

bench-startup-node: devcluster-build-node images ## on the real node: MLModel apply -> Ready and scale 1 -> 4, vs a plain Deployment of the same pods (~7 min: cluster up, 5 rounds, teardown)
	$(RUN) python -m bench.startup.node

bench-images: setup ## image build times (cold/warm) and sizes vs the seed naive Dockerfile (~3 min)
	$(RUN) python -m bench.images

bench-operator: devcluster-build ## operator latency, 1,000 MLModels on kwok nodes, steady-state writes vs a naive kopf operator (~15 min)
	$(RUN) python -m bench.operator
