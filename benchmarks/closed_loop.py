"""What the service benchmarks share: the same banking prompts, one closed-loop run against a
running service (the user key), and the median of a figure over rounds."""

from __future__ import annotations

import statistics
from typing import Any

import httpx

from app.evaluation.loadtest import figures, run_load
from benchmarks.overhead import KEY

PROMPTS = [
    "I still have not received my new card",
    "how do I top up my account",
    "my card payment was declined",
    "I want to close my account",
]


async def closed_loop(url: str, requests: int, concurrency: int, max_tokens: int) -> dict[str, Any]:
    """`requests` plain /generate calls, `concurrency` clients each sending its next as soon as
    its last ends; the run's figures (app.evaluation.loadtest.figures)."""
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as c:
        outcomes, seconds = await run_load(
            c,
            PROMPTS,
            concurrency=concurrency,
            requests=requests,
            stream=False,
            max_tokens=max_tokens,
            progress=False,
        )
    return figures(outcomes, seconds)


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in runs)
