"""The transformers engine: one worker thread runs `model.generate` for a batch of concurrent
requests that share their decoding settings, streaming each row's tokens back to its caller.

`model.generate` takes one generation config per call, so requests are grouped by
(greedy | temperature, top_p); a seeded request runs alone (one RNG per call). Each row stops on
its own (EOS, its max_tokens, its caller leaving, which a stop string the adapter saw is too)
through a StoppingCriteria that marks it finished; the batch ends when every row has.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer

from app.backends.grammar import TokenMask, compiled, lark_compiled
from app.backends.qlora.engine import Delta, Sampling, following, spelled
from app.backends.qlora.hf_processors import GrammarMask
from app.backends.token_scores import Scored, scored

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Row:
    ids: list[int]
    params: Sampling
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[Delta | BaseException]
    tokens: list[int] = field(default_factory=list)
    sent: int = 0  # characters of the decoded text already sent
    logprobs: torch.Tensor | None = None  # the step's log-probabilities, when scored
    scored: list[Scored] = field(default_factory=list)  # tokens scored, not yet sent
    done: bool = False
    cancelled: bool = False

    def push(self, item: Delta | BaseException) -> None:
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)

    @property
    def key(self) -> tuple[Any, ...]:
        p = self.params
        if p.seed is not None or p.constrained:  # one RNG, or one grammar, a call
            return ("alone", id(self))
        return ("greedy",) if p.temperature == 0 else ("sample", p.temperature, p.top_p)


@dataclass(eq=False)
class _Choice:
    """A decided label after a prompt: a job of its own, between batches."""

    ids: list[int]
    continuations: list[list[int]]
    loop: asyncio.AbstractEventLoop
    result: asyncio.Future[tuple[int, float]]
    cancelled: bool = False
    done: bool = False

    @property
    def key(self) -> tuple[Any, ...]:
        return ("choice", id(self))  # batched with nothing else

    def push(self, item: tuple[int, float] | BaseException) -> None:
        def settle() -> None:
            if self.result.done():  # its caller left
                return
            if isinstance(item, BaseException):
                self.result.set_exception(item)
            else:
                self.result.set_result(item)

        self.loop.call_soon_threadsafe(settle)


class _RowStreamer(BaseStreamer):
    """Receives each step's tokens for the whole batch and hands every row its own text."""

    def __init__(self, rows: list[_Row], tokenizer: Any, eos: set[int]):
        self._rows, self._tokenizer, self._eos = rows, tokenizer, eos
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # the first call carries the prompts
            self._prompt_seen = True
            return
        last = value.reshape(len(self._rows), -1)[:, -1].tolist()
        for row, token in zip(self._rows, last, strict=True):
            if not row.done:
                self._step(row, int(token))

    def end(self) -> None:
        for row in self._rows:
            if not row.done:
                self._finish(row, "length")

    def _step(self, row: _Row, token: int) -> None:
        if row.cancelled:
            row.done = True
            return
        if token in self._eos:
            self._finish(row, "stop")
            return
        row.tokens.append(token)
        if row.logprobs is not None and row.params.logprobs is not None:
            row.scored.append(scored(row.logprobs, token, row.params.logprobs))
        if len(row.tokens) >= row.params.max_tokens:
            self._finish(row, "length")
            return
        text = self._tokenizer.decode(row.tokens, skip_special_tokens=True)
        if not text.endswith("\ufffd") and len(text) > row.sent:  # hold a partial character
            row.push(Delta(text[row.sent :], len(row.tokens), scored=tuple(row.scored)))
            row.sent, row.scored = len(text), []

    def _finish(self, row: _Row, reason: Literal["stop", "length"]) -> None:
        row.done = True
        text = self._tokenizer.decode(row.tokens, skip_special_tokens=True)
        row.push(Delta(text[row.sent :], len(row.tokens), reason, tuple(row.scored)))


class _StepScores(LogitsProcessor):
    """Keeps each scored row's log-probabilities of the step, as the model gave them: before
    the grammar's mask and the sampling's temperature and top_p, which come after it."""

    def __init__(self, rows: list[_Row]):
        self._rows = rows

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row, logits in zip(self._rows, scores, strict=True):
            if row.params.logprobs is not None and not row.done:
                row.logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        return scores


class _RowsDone(StoppingCriteria):
    def __init__(self, rows: list[_Row]):
        self._rows = rows

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        flags = [row.done or row.cancelled for row in self._rows]
        return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]


class TransformersEngine:
    def __init__(self, model: Any, tokenizer: Any, max_batch: int):
        self._model, self._tokenizer, self._max_batch = model, tokenizer, max_batch
        self._pending: queue.SimpleQueue[_Row | _Choice | None] = queue.SimpleQueue()
        self._deferred: list[_Row | _Choice] = []
        self._eos = _eos_ids(model, tokenizer)
        self._grammar_tokenizer: Any = None  # llguidance's view of the tokenizer, made once
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self._eos)
        self._thread = threading.Thread(target=self._run, name="hf-generate", daemon=True)
        self._thread.start()

    async def stream(self, ids: list[int], sampling: Sampling) -> AsyncGenerator[Delta, None]:
        row = _Row(ids, sampling, asyncio.get_running_loop(), asyncio.Queue())
        self._pending.put(row)
        try:
            while True:
                item = await row.out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish is not None:
                    return
        finally:
            row.cancelled = True  # the worker stops this row at its next step

    async def choose(self, ids: list[int], continuations: list[list[int]]) -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        job = _Choice(ids, continuations, loop, loop.create_future())
        self._pending.put(job)
        try:
            return await job.result
        finally:
            job.cancelled = True  # a caller that left: the worker skips it

    async def close(self) -> None:
        self._pending.put(None)
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                if batch and isinstance(batch[0], _Choice):
                    batch[0].push(self._choose(batch[0]))
                    continue
                self._generate(cast(list[_Row], batch))
            except Exception as exc:  # one bad batch must not stop the engine
                logger.exception("generation failed")
                for row in batch:
                    if not row.done:
                        row.push(RuntimeError(f"generation failed: {exc}"))

    def _choose(self, job: _Choice) -> tuple[int, float]:
        """The label's steps in one job: the prompt once, then a token a step on its cache."""
        path: list[int] = []
        logprob = 0.0
        fresh, cache = job.ids, None
        with torch.inference_mode():
            while (index := spelled(path, job.continuations)) is None:
                out = self._model(
                    input_ids=torch.tensor([fresh], device=self._model.device),
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                cache = out.past_key_values
                logprobs = torch.log_softmax(out.logits[0, -1].float(), dim=-1).cpu()
                allowed = torch.tensor(following(path, job.continuations))
                token = int(allowed[int(torch.argmax(logprobs[allowed]))])
                path.append(token)
                logprob += float(logprobs[token])
                fresh = [token]
        return index, math.exp(logprob)

    def _next_batch(self) -> list[_Row | _Choice] | None:
        """The oldest waiting request and those like it, up to max_batch; None to stop."""
        first = self._deferred.pop(0) if self._deferred else self._pending.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < self._max_batch:
            try:
                row = self._pending.get_nowait()
            except queue.Empty:
                break
            if row is None:
                self._pending.put(None)  # stop after this batch
                break
            (batch if row.key == first.key else self._deferred).append(row)
        return [row for row in batch if not row.cancelled]

    def _generate(self, rows: list[_Row]) -> None:
        if not rows:
            return
        width = max(len(row.ids) for row in rows)
        ids = torch.tensor([[self._pad] * (width - len(r.ids)) + r.ids for r in rows])
        mask = torch.tensor([[0] * (width - len(r.ids)) + [1] * len(r.ids) for r in rows])
        p = rows[0].params
        sampling: dict[str, Any] = {"do_sample": False}
        if p.temperature > 0:
            sampling = {"do_sample": True, "temperature": p.temperature, "top_p": p.top_p}
        if p.seed is not None:
            torch.manual_seed(p.seed)
        processors: list[LogitsProcessor] = []
        if any(r.params.logprobs is not None for r in rows):
            processors.append(_StepScores(rows))  # first: the model's own numbers
        if p.constrained:  # a row alone: its key says so
            processors.append(self._masked(rows[0]))
        sampling["logits_processor"] = LogitsProcessorList(processors)
        with torch.inference_mode():
            self._model.generate(
                input_ids=ids.to(self._model.device),
                attention_mask=mask.to(self._model.device),
                max_new_tokens=max(r.params.max_tokens for r in rows) + 1,  # +1: see EOS
                streamer=_RowStreamer(rows, self._tokenizer, self._eos),
                stopping_criteria=StoppingCriteriaList([_RowsDone(rows)]),
                pad_token_id=self._pad,
                **sampling,
            )

    def _masked(self, row: _Row) -> GrammarMask:
        if self._grammar_tokenizer is None:
            from llguidance.hf import from_tokenizer

            vocab = self._model.config.vocab_size
            eos = sorted(self._eos)
            self._grammar_tokenizer = from_tokenizer(self._tokenizer, n_vocab=vocab, eos_token=eos)
        p = row.params
        grammar = (
            compiled(p.json_schema) if p.json_schema is not None else lark_compiled(p.lark or "")
        )
        return GrammarMask(TokenMask(self._grammar_tokenizer, grammar), len(row.ids))


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured]
    ids.append(tokenizer.eos_token_id)
    return {int(i) for i in ids if i is not None}
