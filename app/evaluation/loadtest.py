"""`bankllm bench`'s engine: a closed-loop load on /generate and its figures, named as
`vllm bench serve` names them."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from tqdm import tqdm

from app.telemetry.summary import percentile

PERCENTILES = (50, 90, 99)


@dataclass
class Outcome:
    """One request as the client saw it (times from time.perf_counter)."""

    start: float
    end: float = 0.0
    first_token: float | None = None  # first streamed delta, or start + the server's ttft
    token_times: list[float] = field(default_factory=list)  # each streamed delta's arrival
    prompt_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_token is None else (self.first_token - self.start) * 1000

    @property
    def e2el_ms(self) -> float:
        return (self.end - self.start) * 1000

    @property
    def tpot_ms(self) -> float | None:
        if self.first_token is None or self.output_tokens < 2:
            return None
        return (self.end - self.first_token) * 1000 / (self.output_tokens - 1)

    @property
    def itl_ms(self) -> list[float]:
        return [(b - a) * 1000 for a, b in itertools.pairwise(self.token_times)]


def _stats(name: str, values: Sequence[float]) -> dict[str, float | None]:
    def r(v: float) -> float | None:
        return None if v != v else round(v, 2)  # NaN -> None

    figures = {f"mean_{name}_ms": r(sum(values) / len(values)) if values else None}
    figures[f"median_{name}_ms"] = r(percentile(list(values), 50))
    for q in PERCENTILES[1:]:
        figures[f"p{q}_{name}_ms"] = r(percentile(list(values), q))
    return figures


def figures(
    outcomes: Sequence[Outcome],
    duration_s: float,
    slo_ttft_ms: float | None = None,
    slo_e2e_ms: float | None = None,
) -> dict[str, Any]:
    """Throughput, latency distributions and goodput of a run."""
    done = [o for o in outcomes if o.error is None]
    output = sum(o.output_tokens for o in done)

    def good(o: Outcome) -> bool:
        ttft = o.ttft_ms
        return (slo_ttft_ms is None or (ttft is not None and ttft <= slo_ttft_ms)) and (
            slo_e2e_ms is None or o.e2el_ms <= slo_e2e_ms
        )

    failures = Counter(o.error for o in outcomes if o.error is not None)
    result: dict[str, Any] = {
        "completed": len(done),
        "failed": len(outcomes) - len(done),
        "errors": dict(failures.most_common()),  # why, each with its count
        "duration": round(duration_s, 3),
        "total_input_tokens": sum(o.prompt_tokens for o in done),
        "total_output_tokens": output,
        "request_throughput": round(len(done) / duration_s, 3),
        "output_throughput": round(output / duration_s, 2),
        "total_token_throughput": round(
            (output + sum(o.prompt_tokens for o in done)) / duration_s, 2
        ),
    }
    if slo_ttft_ms is not None or slo_e2e_ms is not None:
        result["request_goodput"] = round(sum(good(o) for o in done) / duration_s, 3)
    result |= _stats("ttft", [t for o in done if (t := o.ttft_ms) is not None])
    result |= _stats("tpot", [t for o in done if (t := o.tpot_ms) is not None])
    result |= _stats("itl", [t for o in done for t in o.itl_ms])
    result |= _stats("e2el", [o.e2el_ms for o in done])
    return result


async def _one(client: httpx.AsyncClient, body: dict[str, Any]) -> Outcome:
    outcome = Outcome(start=time.perf_counter())
    try:
        if body.get("stream"):
            async with client.stream("POST", "/generate", json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise _Failed(error_of(response))
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    now = time.perf_counter()
                    if "error" in event:
                        error = event["error"]
                        raise _Failed(f"{error['type']} mid-stream: {error.get('message', '')}")
                    if "delta" in event:
                        outcome.first_token = outcome.first_token or now
                        outcome.token_times.append(now)
                    else:
                        _take_usage(outcome, event)
        else:
            response = await client.post("/generate", json=body)
            if response.status_code != 200:
                raise _Failed(error_of(response))
            result = response.json()
            _take_usage(outcome, result)
            if result.get("ttft_ms") is not None:  # the server's own measure
                outcome.first_token = outcome.start + result["ttft_ms"] / 1000
    except _Failed as exc:
        outcome.error = str(exc)
    except httpx.HTTPError as exc:
        outcome.error = type(exc).__name__
    outcome.end = time.perf_counter()
    return outcome


class _Failed(Exception):
    pass


def error_of(response: httpx.Response) -> str:
    """Why the service refused a request, as it said: the status, its error's type and
    message (the status and reason where the body is not the service's)."""
    try:
        error = response.json()["error"]
        return f"{response.status_code} {error['type']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} {response.reason_phrase}".rstrip()


def _take_usage(outcome: Outcome, result: dict[str, Any]) -> None:
    outcome.prompt_tokens = int(result.get("prompt_tokens", 0))
    outcome.output_tokens = int(result.get("completion_tokens", 0))


async def run_load(
    client: httpx.AsyncClient,
    prompts: Sequence[str],
    *,
    concurrency: int,
    requests: int,
    stream: bool,
    max_tokens: int,
    progress: bool = True,
) -> tuple[list[Outcome], float]:
    """`concurrency` clients, each sending its next request when its last one ends, until
    `requests` have been sent. Returns the outcomes and the run's duration in seconds."""
    order = iter(range(requests))
    outcomes: list[Outcome] = []
    bar = tqdm(total=requests, desc=f"c={concurrency}", unit="req", disable=not progress)

    async def worker() -> None:
        for i in order:
            body = {
                "prompt": prompts[i % len(prompts)],
                "max_tokens": max_tokens,
                "temperature": 0,
                "stream": stream,
            }
            outcomes.append(await _one(client, body))
            bar.update(1)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    duration = time.perf_counter() - started
    bar.close()
    return outcomes, duration
