"""`qlora`: a causal LM (Llama 3.1 8B in production) with a LoRA adapter from `bankllm finetune`,
served by vLLM (continuous batching, one LoRARequest per generation) or, where vLLM is absent,
by transformers + peft (+ bitsandbytes 4-bit) with batching of concurrent requests."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from app.adapters.protocol import Completion, ModelInfo, Piece, SamplingParams, collect
from app.errors import InvalidRequest, ModelUnavailable
from app.qlora.prompting import SYSTEM_PROMPT, chat_prompt, read_meta
from app.registry import ModelSpec


@dataclass(frozen=True)
class QLoRAOptions:
    base_model: str = ""  # a local folder or a hub id
    adapter: str = ""  # the folder `bankllm finetune` wrote
    engine: Literal["vllm", "transformers"] = "vllm"
    quantization: Literal["bitsandbytes", "none"] = "bitsandbytes"
    dtype: str = "auto"  # auto | bfloat16 | float16 | float32
    max_model_len: int = 2048  # prompt + reply tokens
    max_lora_rank: int = 16  # vLLM: the largest rank an adapter may have
    gpu_memory_utilization: float = 0.85  # vLLM on GPU: share of memory for weights + KV cache
    kv_cache_bytes: int | None = None  # vLLM: an explicit KV cache size (needed on CPU)
    max_batch: int = 8  # transformers: requests decoded together

    @classmethod
    def of(cls, spec: ModelSpec) -> QLoRAOptions:
        known = {k: v for k, v in spec.options.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Engine(Protocol):
    def stream(self, ids: list[int], params: SamplingParams) -> AsyncGenerator[Piece, None]: ...

    async def close(self) -> None: ...


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def unavailable_reason(spec: ModelSpec) -> str | None:
    o = QLoRAOptions.of(spec)
    if not o.base_model:
        return "QLORA_BASE_MODEL is not set"
    if not o.adapter:
        return "QLORA_ADAPTER is not set"
    if not (Path(o.adapter) / "adapter_config.json").is_file():
        return f"no LoRA adapter at {o.adapter}; make one with `bankllm finetune`"
    if o.engine == "vllm" and not _installed("vllm"):
        return "the vllm package is not installed (QLORA_ENGINE=transformers runs without it)"
    if o.engine == "transformers" and not _installed("transformers", "peft"):
        return "transformers and peft are not installed (pip install '.[qlora]')"
    if o.quantization == "bitsandbytes" and not _installed("bitsandbytes"):
        return "bitsandbytes is not installed (pip install '.[qlora]', or QLORA_QUANTIZATION=none)"
    return None


def adapter_version(spec: ModelSpec) -> str:
    """The adapter's version from its bankllm.json, else its folder name."""
    o = QLoRAOptions.of(spec)
    meta = read_meta(Path(o.adapter)) if o.adapter else {}
    return str(meta.get("version") or Path(o.adapter).name or "unknown")


class QLoRAAdapter:
    def __init__(self, spec: ModelSpec):
        self._o = QLoRAOptions.of(spec)
        self._info = ModelInfo(spec.name, spec.backend, adapter_version(spec))
        self._system = str(read_meta(Path(self._o.adapter)).get("system_prompt", SYSTEM_PROMPT))
        self._tokenizer: Any = None
        self._engine: Engine | None = None

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def problem(self) -> str | None:
        return None

    async def load(self) -> None:
        from transformers import AutoTokenizer

        self._tokenizer = await asyncio.to_thread(
            AutoTokenizer.from_pretrained, _tokenizer_source(self._o)
        )
        if self._o.engine == "vllm":
            from app.qlora.vllm_engine import start_vllm

            self._engine = await start_vllm(self._o)
        else:
            from app.qlora.hf_loading import load_transformers

            self._engine = await asyncio.to_thread(load_transformers, self._o, self._tokenizer)

    async def generate(self, prompt: str, params: SamplingParams) -> Completion:
        return await collect(self.stream(prompt, params))

    def stream(self, prompt: str, params: SamplingParams) -> AsyncGenerator[Piece, None]:
        if self._engine is None:
            raise ModelUnavailable(f"model {self._info.name!r} is not loaded")
        text = chat_prompt(self._tokenizer, prompt, self._system)
        ids = list(self._tokenizer(text, add_special_tokens=False)["input_ids"])
        if (length := len(ids)) >= self._o.max_model_len:
            raise InvalidRequest(
                f"prompt: {length} tokens with the chat template; the model takes fewer than "
                f"{self._o.max_model_len} (QLORA_MAX_MODEL_LEN)",
                [{"loc": ["body", "prompt"], "msg": "too long for the model", "tokens": length}],
            )
        return self._engine.stream(ids, params)

    async def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.close()


def _tokenizer_source(o: QLoRAOptions) -> str:
    """`bankllm finetune` saves the tokenizer (with its chat template) beside the adapter."""
    adapter = Path(o.adapter)
    return str(adapter) if (adapter / "tokenizer_config.json").is_file() else o.base_model
