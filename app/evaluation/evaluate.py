"""`bankllm eval`'s engine: ask a model about labelled examples and score its answers (the ways
to ask are in `app.cli.askers`, and a gated switch asks a loaded candidate)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from app.banking.corpus import Example
from app.banking.intents import OUT_OF_SCOPE, IntentSet
from app.evaluation.scoring import accuracy, confusions, macro_f1
from app.telemetry.clock import utc_now
from app.telemetry.summary import percentile


@dataclass(frozen=True)
class ExampleAnswer:
    intent: str | None
    text: str
    latency_ms: float
    completion_tokens: int
    model: str
    backend: str
    version: str
    error: str | None = None  # the error type when the request failed
    handoff: str | None = None  # why the answer was a hand-off, if it was
    confidence: float | None = None  # the probability the model gave its choice

    @property
    def choice(self) -> str | None:
        """What the answer chose: its intent, `out_of_scope` for any hand-off, or None."""
        return OUT_OF_SCOPE if self.handoff is not None else self.intent


Ask = Callable[[str, str], Awaitable[ExampleAnswer]]  # (text, its known intent) -> the answer


@dataclass(frozen=True)
class EvalReport:
    model: str
    backend: str
    version: str
    data: str
    examples: int
    accuracy: float
    macro_f1: float
    reply_match: float  # share of answers whose text is the approved reply of their intent
    unparsed: int  # answers without a known intent (failed requests included)
    errors: int  # failed requests
    p50_ms: float
    p95_ms: float
    tokens_per_s: float  # completion tokens over the run's wall time
    seconds: float
    confused: list[tuple[str, str, int]]
    in_scope_accuracy: float | None  # on the examples of an intent, a hand-off counted wrong
    in_scope_handoffs: float | None  # the share of those handed off
    out_of_scope_recall: float | None  # the share of `out_of_scope` examples handed off

    def row(self) -> dict[str, Any]:
        """The benchmark-log row of this evaluation."""
        figures = {k: round(v, 4) if isinstance(v, float) else v for k, v in vars(self).items()}
        figures["confused"] = [list(c) for c in self.confused]
        return {"ts": utc_now(), "type": "eval", **figures}


async def evaluate(
    ask: Ask,
    examples: Sequence[Example],
    intents: IntentSet,
    *,
    data: str,
    concurrency: int = 1,
    progress: bool = True,
) -> EvalReport:
    """Ask about every example, `concurrency` at a time, and score the answers."""
    answers, seconds = await ask_all(ask, examples, concurrency=concurrency, progress=progress)
    return scored(examples, answers, intents, data=data, seconds=seconds)


async def ask_all(
    ask: Ask, examples: Sequence[Example], *, concurrency: int = 1, progress: bool = True
) -> tuple[list[ExampleAnswer], float]:
    """Every example's answer, `concurrency` at a time, and the seconds they took."""
    if not examples:
        raise ValueError("no examples to evaluate")
    slots = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(examples), desc="eval", unit="ex", disable=not progress)

    async def one(example: Example) -> ExampleAnswer:
        async with slots:
            answer = await ask(example.text, example.category)
        bar.update(1)
        return answer

    started = time.perf_counter()
    answers = await asyncio.gather(*(one(e) for e in examples))
    seconds = time.perf_counter() - started
    bar.close()
    return answers, seconds


def scored(
    examples: Sequence[Example],
    answers: Sequence[ExampleAnswer],
    intents: IntentSet,
    *,
    data: str,
    seconds: float,
) -> EvalReport:
    """The report of answers to examples (an `out_of_scope` example is right when handed off)."""
    approved = {i.label: i.reply for i in intents.intents.values()}
    pairs = [(e.category, a.choice) for e, a in zip(examples, answers, strict=True)]
    in_scope = [(c, chose) for c, chose in pairs if c != OUT_OF_SCOPE]
    away = [chose for c, chose in pairs if c == OUT_OF_SCOPE]
    served = [a for a in answers if a.error is None]
    latencies = [a.latency_ms for a in served]
    first = served[0] if served else answers[0]
    return EvalReport(
        model=first.model,
        backend=first.backend,
        version=first.version,
        data=data,
        examples=len(examples),
        accuracy=accuracy(pairs),
        macro_f1=macro_f1(pairs),
        reply_match=sum(
            a.intent is not None and a.text.strip() == approved.get(a.intent) for a in answers
        )
        / len(answers),
        unparsed=sum(a.choice is None for a in answers),
        errors=len(answers) - len(served),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        tokens_per_s=sum(a.completion_tokens for a in served) / seconds,
        seconds=seconds,
        confused=confusions(pairs),
        in_scope_accuracy=accuracy(in_scope) if in_scope else None,
        in_scope_handoffs=(
            sum(chose == OUT_OF_SCOPE for _, chose in in_scope) / len(in_scope)
            if in_scope
            else None
        ),
        out_of_scope_recall=sum(c == OUT_OF_SCOPE for c in away) / len(away) if away else None,
    )
