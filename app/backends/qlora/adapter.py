"""`qlora`: a causal LM (Llama 3.1 8B in production) with a LoRA adapter from `bankllm finetune`,
served by vLLM (continuous batching, one LoRARequest per generation) or, where vLLM is absent,
by transformers + peft (+ bitsandbytes 4-bit) with batching of concurrent requests."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
from collections.abc import AsyncGenerator
from dataclasses import replace
from pathlib import Path
from typing import Any

import llguidance

from app.backends.grammar import with_intent
from app.backends.logprobs import spelling_of, token_logprobs
from app.backends.machine_time import MachinePrice
from app.backends.protocol import (
    HANDOFF_BELOW,
    Conversation,
    FinishReason,
    ModelInfo,
    ModelSpec,
    Piece,
    SamplingParams,
    Usage,
    handoff_threshold,
)
from app.backends.qlora.engine import Engine, EngineDied, Sampling
from app.backends.qlora.options import QLoRAOptions
from app.backends.qlora.prompting import (
    META_FILE,
    SYSTEM_PROMPT,
    MarkupInWords,
    TemplateRefused,
    chat_ids,
    intent_prefix_ids,
    label_ids,
    read_meta,
)
from app.backends.qlora.sampling import checked_schema, reply_sampling
from app.backends.qlora.tool_calls import CallReader, template_tools, template_turns
from app.backends.stops import StopScanner
from app.backends.token_scores import Scored
from app.banking.intents import IntentSet, format_answer
from app.errors import InvalidRequest, ModelFailed, ModelUnavailable

logger = logging.getLogger(__name__)
RESTART_INITIAL_S, RESTART_MAX_S = 1.0, 60.0  # a dead engine's restarts, the wait doubling


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def unavailable_reason(spec: ModelSpec) -> str | None:
    o = spec.options_as(QLoRAOptions)
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
    o = spec.options_as(QLoRAOptions)
    meta = read_meta(Path(o.adapter)) if o.adapter else {}
    return str(meta.get("version") or Path(o.adapter).name or "unknown")


def _machine(options: QLoRAOptions) -> MachinePrice:
    """The device its answers are billed: one GPU an engine (a CPU build's cores are named
    as what they are, at the same hourly price)."""
    import torch

    unit = "GPU-s" if torch.cuda.is_available() else "CPU-s"
    return MachinePrice(unit, 1, options.gpu_hour_usd)


class QLoRAAdapter:
    def __init__(self, spec: ModelSpec, intents: IntentSet):
        self._o = spec.options_as(QLoRAOptions)
        meta = read_meta(Path(self._o.adapter)) if self._o.adapter else {}
        below = handoff_threshold(meta.get(HANDOFF_BELOW), f"{self._o.adapter}/{META_FILE}")
        version = adapter_version(spec)
        self._info = ModelInfo(
            spec.name, spec.backend, version, below, calls_tools=True, gives_logprobs=True
        )
        self._system = str(meta.get("system_prompt", SYSTEM_PROMPT))
        self._labels = intents.answer_labels
        self._tokenizer: Any = None
        self._prefix: list[int] = []  # `intent:`
        self._label_ids: list[list[int]] = []  # each label's tokens, in `_labels` order
        self._engine: Engine | None = None
        self._spelling: llguidance.LLTokenizer | None = None  # tokens' bytes, for logprobs
        self._problem: str | None = None  # the engine died: why, while it restarts
        self._restart: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def problem(self) -> str | None:
        return self._problem

    async def load(self) -> None:
        from transformers import AutoConfig, AutoTokenizer

        self._tokenizer = await asyncio.to_thread(
            AutoTokenizer.from_pretrained, _tokenizer_source(self._o)
        )
        self._prefix = intent_prefix_ids(self._tokenizer)
        self._label_ids = [label_ids(self._tokenizer, label) for label in self._labels]
        config = await asyncio.to_thread(AutoConfig.from_pretrained, self._o.base_model)
        self._spelling = spelling_of(self._tokenizer, config)
        self._o = self._o.model_copy(update={"max_model_len": context_length(self._o, config)})
        self._engine = await self._start_engine()
        self._info = replace(self._info, machine=_machine(self._o))

    async def _start_engine(self) -> Engine:
        if self._o.engine == "vllm":
            from app.backends.qlora.vllm_engine import start_vllm

            return await start_vllm(self._o)
        from app.backends.qlora.hf_loading import load_transformers

        return await asyncio.to_thread(load_transformers, self._o, self._tokenizer)

    async def stream(
        self, messages: Conversation, params: SamplingParams
    ) -> AsyncGenerator[Piece, None]:
        if self._problem is not None:
            raise ModelFailed(self._problem)
        if self._engine is None:
            raise ModelUnavailable(f"model {self._info.name!r} is not loaded")
        schema = checked_schema(params.response_format)
        sampling = reply_sampling(params, schema)
        try:
            ids = chat_ids(
                self._tokenizer,
                template_turns(messages),
                self._system,
                template_tools(params.tools),
            )
        except MarkupInWords as exc:
            raise InvalidRequest.fields((["tools"], str(exc), None)) from None
        except TemplateRefused as exc:
            raise InvalidRequest.fields((["messages"], str(exc), None)) from None
        limit = self._o.max_model_len or 0  # set by load()
        longest = max(map(len, self._label_ids))
        if (length := len(ids)) + len(self._prefix) + longest >= limit:
            raise InvalidRequest.fields(
                (
                    ["prompt"],
                    f"{length} tokens with the chat template; the model takes fewer "
                    f"than {self._o.max_model_len} (QLORA_MAX_MODEL_LEN) with the answer's start",
                    length,
                ),
                kind="too_long",
            )
        engine = self._engine  # this request's, even if a restart replaces it meanwhile
        try:
            # decided, whatever the sampling: the most likely label after `intent:`
            label, confidence = await engine.choose([*ids, *self._prefix], self._label_ids)
            yield Piece(format_answer(self._labels[label], ""), confidence=confidence)
            asked = [*ids, *self._prefix, *self._label_ids[label]]
            if schema is not None:
                sampling = replace(sampling, json_schema=with_intent(schema, self._labels[label]))
            calls = CallReader(self._info.name, params.tools is not None)
            async for piece in self._reply(engine, asked, params.stop, sampling, calls):
                yield piece
        except EngineDied as exc:
            raise ModelFailed(self._died(engine, str(exc))) from exc

    async def _reply(
        self,
        engine: Engine,
        ids: list[int],
        stop: tuple[str, ...],
        sampling: Sampling,
        calls: CallReader,
    ) -> AsyncGenerator[Piece, None]:
        """The reply after the decided intent line, sampled as asked (JSON of a schema, or a
        tool call, when the sampling is held to one); `max_tokens` and the usage count its
        tokens alone. The caller's stop strings cut prose, never a call."""
        scanner = StopScanner(stop)
        finish: FinishReason = "length"
        generated = 0
        scored: list[Scored] = []  # of tokens whose text is not out yet
        async with contextlib.aclosing(engine.stream(ids, sampling)) as deltas:
            async for delta in deltas:
                generated = delta.tokens
                scored += delta.scored
                if kept := scanner.feed(calls.feed(delta.text)):
                    yield Piece(kept, logprobs=token_logprobs(self._spelling, scored))
                    scored = []
                if scanner.stopped:  # leaving the loop closes the engine's sequence
                    finish = "stop"
                    break
                if delta.finish is not None:
                    finish = delta.finish
        spelled = token_logprobs(self._spelling, scored)
        if tail := scanner.flush():
            yield Piece(tail, logprobs=spelled)
            spelled = ()
        text, made = calls.end(whole=finish == "stop")
        yield Piece(text, finish, Usage(len(ids), generated), tool_calls=made, logprobs=spelled)

    async def close(self) -> None:
        self._closing.set()
        if self._restart is not None:  # not cancelled: an engine it is starting must be closed
            await asyncio.shield(self._restart)
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.close()

    async def until_serving(self) -> None:
        """Resolves once a dead engine's restart has ended (tests and admin tools wait on it)."""
        if self._restart is not None:
            await asyncio.shield(self._restart)

    def _died(self, engine: Engine, reason: str) -> str:
        """`engine` died: fail fast (and /health 503) while a new one starts. An engine that
        was replaced already (a request that saw its end late) changes nothing."""
        if engine is self._engine and self._restart is None and not self._closing.is_set():
            logger.error("%s: %s; starting a new engine", self._info.name, reason)
            self._problem = f"{reason}; a new engine is starting"
            self._restart = asyncio.create_task(self._restart_engine())
        return self._problem or reason

    async def _restart_engine(self) -> None:
        dead, self._engine = self._engine, None
        if dead is not None:
            with contextlib.suppress(Exception):  # what is left of it
                await dead.close()
        wait = RESTART_INITIAL_S
        while not self._closing.is_set():
            try:
                engine = await self._start_engine()
            except Exception as exc:
                logger.exception("%s: a new engine failed to start", self._info.name)
                self._problem = f"the engine died and a new one failed to start: {exc}"
                with contextlib.suppress(TimeoutError):  # the backoff, cut short by close()
                    await asyncio.wait_for(self._closing.wait(), wait)
                wait = min(wait * 2, RESTART_MAX_S)
                continue
            if self._closing.is_set():  # closed while it started: nobody will use it
                await engine.close()
                break
            self._engine = engine
            logger.warning("%s: a new engine serves", self._info.name)
            self._problem = None
            break
        self._restart = None


def context_length(o: QLoRAOptions, config: Any) -> int:
    """QLORA_MAX_MODEL_LEN, or the model's own context when unset; a value above the model's
    own is refused at load, naming both (vLLM would refuse it less clearly)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    native = getattr(text, "max_position_embeddings", None)  # multimodal configs nest it
    if o.max_model_len is None:
        if native is None:
            raise ModelUnavailable(
                "QLORA_MAX_MODEL_LEN is unset and the model's config names no "
                "max_position_embeddings: set QLORA_MAX_MODEL_LEN"
            )
        return int(native)
    if native is not None and o.max_model_len > native:
        raise ModelUnavailable(
            f"QLORA_MAX_MODEL_LEN={o.max_model_len} is more than the model's own context, "
            f"{native} tokens (max_position_embeddings): set it to {native} or less, or unset it"
        )
    return o.max_model_len


def _tokenizer_source(o: QLoRAOptions) -> str:
    """`bankllm finetune` saves the tokenizer (with its chat template) beside the adapter."""
    adapter = Path(o.adapter)
    return str(adapter) if (adapter / "tokenizer_config.json").is_file() else o.base_model
