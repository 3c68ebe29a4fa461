"""`custom`: our from-scratch GPT; concurrent requests share its forward passes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from tokenizers.decoders import DecodeStream

from app.adapters.custom_options import CustomOptions
from app.adapters.protocol import (
    Conversation,
    FinishReason,
    ModelInfo,
    ModelSpec,
    Piece,
    SamplingParams,
    Usage,
    user_text,
)
from app.adapters.stops import StopScanner
from app.errors import InvalidRequest, ModelUnavailable
from app.gpt.batching import BatchDecoder, Emit, Row
from app.gpt.checkpoint import Checkpoint, load_checkpoint, read_config
from app.gpt.generate import Sampling
from app.gpt.tokenizer import EOS, encode_prompt, special_id

DEFAULT_MAX_BATCH = 16


def checkpoint_version(spec: ModelSpec) -> str:
    """The version named in the checkpoint's config, read without loading weights."""
    try:
        return str(read_config(spec.options_as(CustomOptions).checkpoint)["version"])
    except (OSError, KeyError, ValueError):
        return "unknown"


def unavailable_reason(spec: ModelSpec) -> str | None:
    path = spec.options_as(CustomOptions).checkpoint
    if not (path / "config.json").is_file():
        return f"no checkpoint at {path}; train one with `bankllm train --out {path}`"
    return None


class CustomAdapter:
    def __init__(self, spec: ModelSpec):
        options = spec.options_as(CustomOptions)
        self._path = options.checkpoint
        self._max_batch = options.max_batch or DEFAULT_MAX_BATCH
        self._compile = options.compile
        self._info = ModelInfo(spec.name, spec.backend, checkpoint_version(spec))
        self._ckpt: Checkpoint | None = None
        self._decoder: BatchDecoder | None = None

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def problem(self) -> str | None:
        return None

    @property
    def decoder(self) -> BatchDecoder | None:
        """The running decoder, once loaded (its `stepper.compiled` tells the fast path)."""
        return self._decoder

    async def load(self) -> None:
        self._ckpt = await asyncio.to_thread(load_checkpoint, self._path)
        self._decoder = BatchDecoder(
            self._ckpt.model,
            self._max_batch,
            self._info.name,
            restart=self._ckpt.restart_tokens,
            compile=self._compile,
        )
        self._info = ModelInfo(self._info.name, self._info.backend, self._ckpt.version)

    async def stream(
        self, messages: Conversation, params: SamplingParams
    ) -> AsyncGenerator[Piece, None]:
        """Answers the latest user turn: the model was trained on single questions."""
        if self._ckpt is None or self._decoder is None:
            raise ModelUnavailable(f"model {self._info.name!r} is not loaded")
        tokenizer = self._ckpt.tokenizer
        ids = encode_prompt(tokenizer, user_text(messages))
        context = self._ckpt.model.config.block_size
        if len(ids) >= context:
            raise InvalidRequest.fields(
                (
                    ["prompt"],
                    f"{len(ids)} tokens; model {self._info.name!r} reads at most {context - 1}",
                    len(ids),
                ),
                kind="too_long",
            )
        eos = special_id(tokenizer, EOS)
        tokens = _TokenQueue()
        row = Row(
            ids,
            Sampling(params.temperature, params.top_p, params.seed),
            params.max_tokens,
            tokens.emitter(),
            end_token=eos,
        )
        self._decoder.submit(row)
        decoder = DecodeStream(skip_special_tokens=True)
        scanner = StopScanner(params.stop)
        count = 0
        finish: FinishReason = "length"
        try:
            while (token := await tokens.get()) is not None:
                count += 1
                if token == eos:
                    finish = "stop"
                    break
                if (text := decoder.step(tokenizer, token)) and (text := scanner.feed(text)):
                    yield Piece(text)
                if scanner.stopped:
                    finish = "stop"
                    break
        finally:
            row.cancelled = True  # a stop string, an error or a cancelled request
        if tail := scanner.flush():
            yield Piece(tail)
        yield Piece("", finish, Usage(len(ids), count))

    async def close(self) -> None:
        if self._decoder is not None:
            decoder, self._decoder = self._decoder, None
            await asyncio.to_thread(decoder.close)
        self._ckpt = None


class _TokenQueue:
    """Hands tokens from the decoding thread to the request's event loop, in order."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[int | BaseException | None] = asyncio.Queue()

    def emitter(self) -> Emit:
        def emit(item: int | BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
                self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

        return emit

    async def get(self) -> int | None:
        item = await self._queue.get()
        if isinstance(item, BaseException):
            raise RuntimeError("the decoding thread failed") from item
        return item
