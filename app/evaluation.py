"""`bankllm eval`'s engine: ask a model (in-process or over HTTP) about labelled examples."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from tqdm import tqdm

from app.banking.corpus import Example
from app.banking.intents import IntentSet
from app.errors import ServiceError
from app.pipeline import Pipeline
from app.scoring import accuracy, confusions, macro_f1
from app.settings import Settings
from app.telemetry.benchlog import utc_now
from app.telemetry.summary import percentile


@dataclass(frozen=True)
class Answer:
    intent: str | None
    text: str
    latency_ms: float
    completion_tokens: int
    model: str
    backend: str
    version: str
    error: str | None = None  # the error type when the request failed


Ask = Callable[[str], Awaitable[Answer]]


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
    approved = {i.label: i.reply for i in intents.intents.values()}
    if not examples:
        raise ValueError("no examples to evaluate")
    slots = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(examples), desc="eval", unit="ex", disable=not progress)

    async def one(example: Example) -> Answer:
        async with slots:
            answer = await ask(example.text)
        bar.update(1)
        return answer

    started = time.perf_counter()
    answers = await asyncio.gather(*(one(e) for e in examples))
    seconds = time.perf_counter() - started
    bar.close()
    pairs = [(e.category, a.intent) for e, a in zip(examples, answers, strict=True)]
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
        unparsed=sum(a.intent is None for a in answers),
        errors=len(answers) - len(served),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        tokens_per_s=sum(a.completion_tokens for a in served) / seconds,
        seconds=seconds,
        confused=confusions(pairs),
    )


@asynccontextmanager
async def in_process(
    settings: Settings, intents: IntentSet, model: str, max_tokens: int
) -> AsyncIterator[Ask]:
    """Ask `model` through a pipeline of our own (its requests go to the benchmark log)."""
    pipeline = Pipeline(settings.model_copy(update={"active_model": model}), intents)
    await pipeline.start()
    try:
        if pipeline.active is None:
            raise RuntimeError(f"model {model!r} could not be loaded (see the log above)")

        async def ask(text: str) -> Answer:
            try:
                r = await pipeline.generate(text, max_tokens=max_tokens, temperature=0.0)
            except ServiceError as exc:
                info = pipeline.active
                return Answer(
                    None,
                    "",
                    0.0,
                    0,
                    model,
                    info.backend if info else "?",
                    info.version if info else "?",
                    exc.type,
                )
            return Answer(
                r.intent, r.text, r.latency_ms, r.completion_tokens, r.model, r.backend, r.version
            )

        yield ask
    finally:
        await pipeline.close()


@asynccontextmanager
async def over_http(
    url: str, model: str | None, max_tokens: int, api_key: str | None, admin_key: str | None
) -> AsyncIterator[Ask]:
    """Ask a running service; with `model`, switch it to that model first (admin key)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as client:
        active = (await client.get("/models")).raise_for_status().json()["active"]
        if model and model != active:
            admin = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
            response = await client.post("/switch", json={"model": model}, headers=admin)
            if response.status_code != 200:
                raise RuntimeError(f"could not switch {url} to {model!r}: {response.text}")

        async def ask(text: str) -> Answer:
            body = {"prompt": text, "max_tokens": max_tokens, "temperature": 0}
            response = await client.post("/generate", json=body)
            if response.status_code != 200:
                error = response.json().get("error", {}).get("type", str(response.status_code))
                return Answer(None, "", 0.0, 0, model or active, "?", "?", error)
            r = response.json()
            return Answer(
                r["intent"],
                r["text"],
                r["latency_ms"],
                r["completion_tokens"],
                r["model"],
                r["backend"],
                r["version"],
            )

        yield ask
