"""Shared fixtures: tiny checkpoints trained by our own code, settings, and the app under test."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from fastapi import FastAPI

from app.backends.catalog import BACKENDS
from app.backends.custom.gpt.checkpoint import save_checkpoint
from app.backends.custom.gpt.model import GPT, GPTConfig
from app.backends.custom.gpt.tokenizer import EOS, special_id, train_tokenizer
from app.backends.custom.gpt.train import train
from app.banking.corpus import build_corpus
from app.banking.intents import IntentSet
from app.main import create_app
from app.service import Service
from app.settings import Settings, get_settings
from tests.fake_gemini import API_KEY as GEMINI_KEY
from tests.fake_gemini import FakeGemini
from tests.helpers import (
    ADMIN_KEY,
    EVAL_KEY,
    PSEUDONYM_SECRET,
    TINY,
    USER_KEY,
    Started,
    client_of,
    running,
    serving,
    started,
)
from tests.memory import Memory

# The suite's custom models decode eagerly, in this process and in the servers it starts: a
# compile per loaded model would cost each test seconds of CPU. The step's own tests
# (tests/backends/custom/gpt/test_step.py) compile, and hold the compiled step equal to eager.
os.environ.setdefault("CUSTOM_COMPILE", "false")


def pytest_configure(config: pytest.Config) -> None:
    """The suite's compiled kernels in a folder of its own, never a user's cache (the
    processes the tests start inherit it)."""
    os.environ["BANKLLM_CACHE_DIR"] = tempfile.mkdtemp(prefix="bankllm-test-kernels-")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(os.environ.pop("BANKLLM_CACHE_DIR", ""), ignore_errors=True)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three small checkpoints made by our own training code.

    `a` and `b` are trained briefly (two versions of one model); `random` keeps its random
    weights, so greedy decoding runs to max_tokens instead of stopping: the long generation
    that cancellation tests need. `slow` is random too, wider, with a long context and no end:
    thousands of tokens over seconds, for a cancellation that crosses processes.
    """
    root = tmp_path_factory.mktemp("checkpoints")
    intents = IntentSet.load()
    examples = build_corpus(variants=0)
    for name, seed in (("a", 0), ("b", 1)):
        train(
            examples,
            intents,
            root / name,
            replace(TINY, seed=seed),
            progress=False,
        )
    tokenizer = train_tokenizer([e.text for e in examples], 300, intents.labels)
    torch.manual_seed(0)  # the same random weights every run: tests rely on its long answers
    model = GPT(
        GPTConfig(
            vocab_size=tokenizer.get_vocab_size(), block_size=256, n_layer=1, n_head=2, n_embd=32
        )
    )
    save_checkpoint(root / "random", model.eval(), tokenizer, {"data": "none: random weights"})
    slow = GPT(
        GPTConfig(
            vocab_size=tokenizer.get_vocab_size(), block_size=4096, n_layer=2, n_head=4, n_embd=128
        )
    )
    with torch.no_grad():  # the end token out of reach (a large constant feature it opposes)
        slow.ln_f.bias[0] = 50.0
        slow.lm_head.weight[special_id(tokenizer, EOS), 0] = -1.0
    save_checkpoint(root / "slow", slow.eval(), tokenizer, {"data": "none: random weights"})
    return {name: root / name for name in ("a", "b", "random", "slow")}


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path, checkpoints: dict[str, Path]) -> SettingsFactory:
    """Settings for one test: keys on, the echo model on, `custom-b` and `custom-random`
    registered through MODELS_FILE, the benchmark log in the test's own folder."""
    models_file = tmp_path / "models.json"
    models_file.write_text(
        json.dumps(
            {
                "models": [
                    {
                        "name": "custom-b",
                        "backend": "custom",
                        "options": {"checkpoint": str(checkpoints["b"])},
                    },
                    {
                        "name": "custom-random",
                        "backend": "custom",
                        "options": {"checkpoint": str(checkpoints["random"])},
                    },
                    {
                        "name": "broken",
                        "backend": "custom",
                        "options": {"checkpoint": str(tmp_path / "no")},
                    },
                ]
            }
        )
    )

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "custom_checkpoint": checkpoints["a"],
            "models_file": models_file,
            "enable_echo_model": True,
            "api_keys": USER_KEY,
            "admin_api_key": ADMIN_KEY,
            "eval_api_keys": EVAL_KEY,
            "pseudonym_secret": PSEUDONYM_SECRET,
            "benchmark_log": tmp_path / "logs" / "bench.jsonl",
            "benchmark_every": 5,
        }
        return get_settings(**{**values, **overrides})

    return make


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings()


ServeFactory = Callable[..., AbstractAsyncContextManager[Started]]
ServiceFactory = Callable[..., AbstractAsyncContextManager[Service]]
Served = tuple[str, Settings, Service]  # a real server's URL, its settings and its service


@pytest.fixture
def serve(make_settings: SettingsFactory) -> ServeFactory:
    """Start the app for given settings, or for the test settings with overrides:
    `async with serve(active_model="echo") as (app, client, service): ...`"""

    def start(settings: Settings | None = None, **overrides: Any) -> Any:
        return started(settings if settings is not None else make_settings(**overrides))

    return start


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    async with running(settings) as application:
        yield application


@pytest.fixture
def service(app: FastAPI) -> Service:
    served: Service = app.state.service
    return served


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app with the user key."""
    async with client_of(app) as c:
        yield c


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def server(make_settings: SettingsFactory) -> Iterator[Served]:
    """The app behind a real uvicorn on 127.0.0.1 (a free port), serving custom-random."""
    settings = make_settings(active_model="custom-random")
    app = create_app(settings)
    with serving(app) as url:
        yield url, settings, app.state.service


REPLY_B = "intent: lost_or_stolen_card\nWe blocked it."


@pytest.fixture
def memory(monkeypatch: pytest.MonkeyPatch) -> Memory:
    """The in-memory backends, registered beside the real ones for this test."""
    found = Memory()
    for name, backend in found.backends().items():
        monkeypatch.setitem(BACKENDS, name, backend)
    return found


@pytest.fixture
def memory_settings(tmp_path: Path, memory: Memory) -> SettingsFactory:
    """Settings serving in-memory models: `mem` (active), `mem-b`, `mem-away` (answers out of
    scope), `remote` (its prompts leave the process) and `broken` (fails to load); the
    benchmark log in the test's folder."""
    models_file = tmp_path / "memory-models.json"
    entries = [
        {"name": "mem", "backend": "memory"},
        {
            "name": "mem-b",
            "backend": "memory",
            "options": {
                "reply": "intent: lost_or_stolen_card\nWe blocked it.",
                "formats": False,  # refuses a response_format
            },
        },
        {
            "name": "mem-away",
            "backend": "memory",
            "options": {"reply": "intent: out_of_scope\nTomorrow will be sunny."},
        },
        {"name": "remote", "backend": "memory-remote"},
        {"name": "broken", "backend": "memory", "options": {"loads": False}},
    ]
    models_file.write_text(json.dumps(entries))

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "active_model": "mem",
            "models_file": models_file,
            "benchmark_log": tmp_path / "logs" / "memory.jsonl",
            "benchmark_every": 1000,
        }
        return get_settings(**{**values, **overrides})

    return make


@pytest.fixture
def start_service(memory_settings: SettingsFactory) -> ServiceFactory:
    """A started service (no HTTP) for the memory settings with overrides."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Service]:
        service = Service(memory_settings(**overrides), IntentSet.load())
        await service.start()
        try:
            yield service
        finally:
            await service.close()

    return start


@pytest.fixture
def echo_server(make_settings: SettingsFactory) -> Iterator[Served]:
    """The app on the echo model behind a real uvicorn on 127.0.0.1."""
    settings = make_settings(active_model="echo")
    app = create_app(settings)
    with serving(app) as url:
        yield url, settings, app.state.service


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny Llama base model folder and a LoRA adapter for it, both built by the tests."""
    from tests.tiny_llama import build_adapter, build_base

    root = tmp_path_factory.mktemp("tiny-llama")
    base = build_base(root / "base")
    return base, build_adapter(base, root / "adapter")


@pytest.fixture
def qlora_settings(
    make_settings: SettingsFactory, tiny_llama: tuple[Path, Path]
) -> SettingsFactory:
    """Settings whose `qlora` model is the tiny Llama and its adapter (transformers engine)."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "qlora_base_model": str(tiny_llama[0]),
            "qlora_adapter": str(tiny_llama[1]),
            "qlora_engine": "transformers",
            "qlora_quantization": "none",
            "qlora_dtype": "float32",
            "qlora_max_model_len": 512,
            "qlora_kv_cache_bytes": 64 * 2**20,
        }
        return make_settings(**(values | overrides))

    return make


@pytest.fixture(scope="session")
def gemini_upstream() -> Iterator[tuple[FakeGemini, str]]:
    """The fake Gemini REST server on 127.0.0.1, shared by the session's tests."""
    fake = FakeGemini()
    with serving(fake.app()) as url:
        yield fake, url


@pytest.fixture
def fake_gemini(gemini_upstream: tuple[FakeGemini, str]) -> FakeGemini:
    """The fake Gemini, with no queued faults and nothing received yet."""
    fake = gemini_upstream[0]
    fake.reset()
    return fake


@pytest.fixture
def gemini_settings(
    make_settings: SettingsFactory, gemini_upstream: tuple[FakeGemini, str]
) -> SettingsFactory:
    """Settings that point the gemini model at the fake server, with short retry waits."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "gemini_api_key": GEMINI_KEY,
            "gemini_base_url": gemini_upstream[1],
            "gemini_retry_initial_s": 0.01,
            "gemini_retry_max_s": 0.05,
            "gemini_timeout_s": 5.0,
        }
        return make_settings(**(values | overrides))

    return make
