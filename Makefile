# The one front door, for people, Jenkins and CI alike. Every target installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test unit integration bench lint compile clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

demo: install
	$(BIN)/movierec demo

test: install
	$(BIN)/python -m tests.servers run -- $(BIN)/python -m pytest tests

unit: install
	$(BIN)/python -m pytest tests/unit

lint: install
	$(BIN)/ruff check components pipelines predictor simulator movierec tests benchmarks

compile: install
	$(BIN)/movierec pipeline compile --output build/pipeline.yaml

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf build demo-output .movierec
