# Two commands for a new user: `make run` serves the default model, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
ENV_FILE ?=
# torch is installed first and pinned to the CPU build so pip never pulls a CUDA one.
TORCH_CPU := torch==2.13.0

.PHONY: run test lint typecheck install install-dev train-default bench bench-litellm overhead clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH_CPU)
	$(BIN)/pip install --quiet -e '.[cpu,gemini]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[cpu,gemini,dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install  ## serve the default model on $(HOST):$(PORT)
	$(BIN)/bankllm serve --host $(HOST) --port $(PORT) $(if $(ENV_FILE),--env-file $(ENV_FILE))

lint: install-dev
	$(BIN)/ruff check app tests benchmarks
	$(BIN)/ruff format --check app tests benchmarks

typecheck: install-dev
	$(BIN)/mypy

test: lint typecheck  ## lint, type-check and run the whole suite
	$(BIN)/pytest

train-default: install  ## retrain the committed default checkpoint from our own corpus
	$(BIN)/bankllm train --out app/checkpoints/default

bench: install-dev  ## decoding benchmarks (prints the tables in the README)
	$(BIN)/python benchmarks/custom_decode.py

# LiteLLM proxy 1.108.7 for benchmarks/overhead.py, in a virtual environment of its own:
# a benchmark-only peer, never a project dependency (newer releases need `litellm-proxy`,
# which the registry here does not have).
.bench/litellm/bin/litellm:
	$(PYTHON) -m venv .bench/litellm
	.bench/litellm/bin/pip install --quiet 'litellm[proxy]==1.108.7'

bench-litellm: .bench/litellm/bin/litellm

overhead: install-dev bench-litellm  ## our overhead against a bare app and LiteLLM (needs hey)
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
