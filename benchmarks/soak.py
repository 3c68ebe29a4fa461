"""A soak: N mixed requests at concurrency C through /generate while /switch flips between two
custom checkpoints every S seconds; then what the clients saw is held against the log and the
gauges, and the server's memory at start, after the first 1,000 requests and at the end.

    python -m benchmarks.soak [--requests 10000] [--concurrency 64] [--switch-every 2]

It serves the embedded checkpoint as `custom` and a tiny one it trains (seconds) as `custom-b`,
in a `bankllm serve` process of its own. The suite runs the same soak, small, in-process
(tests/test_soak.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.overhead import KEY, Target, _free_port, _serving

ADMIN = "bench-admin-key-0123"
PROMPTS = ("I still have not received my new card", "how do I top up", "my card was stolen")
_GAUGE = re.compile(r"^(bankllm_requests_in_flight|bankllm_queue_depth)\b.* ([\d.e+-]+)$", re.M)


@dataclass
class Soak:
    """What the clients saw, and what the server wrote."""

    statuses: Counter[int] = field(default_factory=Counter)
    failed_streams: int = 0  # a 200 stream that ended in an error event or without its result
    transport: Counter[str] = field(default_factory=Counter)  # no HTTP answer: by exception
    switches: Counter[str] = field(default_factory=Counter)  # ok | busy | failed
    answered: set[str] = field(default_factory=set)  # ids of the 200s
    seconds: float = 0.0
    rss_mb: dict[str, float] = field(default_factory=dict)  # start | after 1000 | end
    rows: Counter[str] = field(default_factory=Counter)  # request rows by status
    summaries: int = 0
    torn: int = 0  # lines of the log that are not whole JSON
    ok_rows_answered: bool = False  # the ok rows' ids are exactly the 200s' ids
    gauges: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        refused = sum(n for code, n in self.statuses.items() if code not in (200, 429))
        return refused + sum(self.transport.values())

    def report(self) -> str:
        total = sum(self.statuses.values()) + sum(self.transport.values())
        lines = [
            f"requests: {total} in {self.seconds:.1f} s ({total / self.seconds:.0f}/s), "
            f"by status {dict(sorted(self.statuses.items()))}; "
            f"failed streams {self.failed_streams}, no answer {dict(self.transport)}",
            f"switches: {dict(self.switches)}",
            f"log: {sum(self.rows.values())} request rows {dict(self.rows)}, "
            f"{self.summaries} summary rows, {self.torn} torn lines; ok rows are the 200s: "
            f"{self.ok_rows_answered}",
            f"gauges after the run: {self.gauges}",
        ]
        if self.rss_mb:
            lines.append("RSS MB: " + ", ".join(f"{k} {v:.0f}" for k, v in self.rss_mb.items()))
        return "\n".join(lines)


def _body(i: int) -> dict[str, Any]:
    """Request i: plain or streamed, mixed max_tokens, temperatures and seeds (reproducible)."""
    rng = random.Random(i)
    body: dict[str, Any] = {
        "prompt": rng.choice(PROMPTS),
        "max_tokens": rng.choice((1, 8, 32, 64)),
        "temperature": rng.choice((0.0, 0.7, 1.0)),
        "stream": i % 2 == 1,
    }
    if rng.random() < 0.5:
        body["seed"] = rng.randrange(2**31)
    return body


async def _one(client: httpx.AsyncClient, body: dict[str, Any], soak: Soak) -> None:
    try:
        await _ask(client, body, soak)
    except httpx.TransportError as exc:  # counted, never retried: a retry would hide it
        soak.transport[type(exc).__name__] += 1


async def _ask(client: httpx.AsyncClient, body: dict[str, Any], soak: Soak) -> None:
    if not body["stream"]:
        response = await client.post("/generate", json=body)
        soak.statuses[response.status_code] += 1
        if response.status_code == 200:
            soak.answered.add(response.json()["id"])
        return
    async with client.stream("POST", "/generate", json=body) as response:
        soak.statuses[response.status_code] += 1
        if response.status_code != 200:
            await response.aread()
            return
        result = None
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                event = json.loads(line.removeprefix("data: "))
                if "error" in event:
                    break
                if "finish_reason" in event:
                    result = event
        if result is None:
            soak.failed_streams += 1
        else:
            soak.answered.add(result["id"])


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


async def soak(
    url: str,
    log: Path,
    *,
    requests: int,
    concurrency: int,
    switch_every_s: float,
    models: tuple[str, str],
    pid: int | None = None,
    max_s: float = 1800,
) -> Soak:
    """Run the soak against a served app whose log is `log` (empty before); bounded by
    `requests` and by `max_s`."""
    result, left, stop = Soak(), iter(range(requests)), asyncio.Event()
    if pid is not None:
        result.rss_mb["start"] = rss_mb(pid)
    # idle connections closed before the server's keep-alive timeout (uvicorn's 5 s) can close
    # them under a request just sent: that race is the client's, and every HTTP client has it
    limits = httpx.Limits(max_connections=concurrency + 1, keepalive_expiry=2.0)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as c:

        async def worker() -> None:
            for i in left:
                await _one(c, _body(i), result)
                if pid is not None and i == 999:
                    result.rss_mb["after 1000"] = rss_mb(pid)

        async def switcher() -> None:
            for turn in range(1, 1_000_000):
                try:
                    await asyncio.wait_for(stop.wait(), switch_every_s)  # a period, not a poll
                    return
                except TimeoutError:
                    pass
                answer = await c.post(
                    "/switch",
                    json={"model": models[turn % 2]},
                    headers={"Authorization": f"Bearer {ADMIN}"},
                )
                kind = {200: "ok", 409: "busy"}.get(answer.status_code, "failed")
                result.switches[kind] += 1

        started = time.perf_counter()
        switching = asyncio.create_task(switcher())
        async with asyncio.timeout(max_s):
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        stop.set()
        await switching
        result.seconds = time.perf_counter() - started
        if pid is not None:
            result.rss_mb["end"] = rss_mb(pid)
        await c.get("/benchmarks/summary")  # waits until the log has every row
        metrics = (await c.get("/metrics")).text
    for name, value in _GAUGE.findall(metrics):
        result.gauges[name] = result.gauges.get(name, 0.0) + float(value)
    _hold_against(result, await asyncio.to_thread(log.read_text))
    return result


def _hold_against(result: Soak, log: str) -> None:
    """Count the log's rows and hold its ok rows against the 200s the clients saw."""
    ok_ids = set()
    for line in log.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            result.torn += 1
            continue
        if row.get("type") == "summary":
            result.summaries += 1
        elif row.get("type") == "request":
            result.rows[row["status"]] += 1
            if row["status"] == "ok":
                ok_ids.add(row["request_id"])
    result.ok_rows_answered = ok_ids == result.answered


def _second_checkpoint(root: Path) -> Path:
    """A tiny checkpoint of our own corpus, trained in seconds: the other side of the flips."""
    from app.backends.custom.gpt.train import TrainConfig, train
    from app.banking.corpus import build_corpus
    from app.banking.intents import IntentSet

    tiny = TrainConfig(n_layer=1, n_head=2, n_embd=32, block_size=128, vocab_size=300, epochs=1)
    out = root / "custom-b"
    train(build_corpus(variants=0), IntentSet.load(), out, tiny, progress=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--switch-every", type=float, default=2.0, help="seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = root / "models.json"
        entry = {"name": "custom-b", "backend": "custom"}
        entry["options"] = {"checkpoint": str(_second_checkpoint(root))}  # type: ignore[assignment]
        models.write_text(json.dumps({"models": [entry]}))
        port, log = _free_port(), root / "soak.jsonl"
        env = {
            "API_KEYS": KEY,
            "ADMIN_API_KEY": ADMIN,
            "MODELS_FILE": str(models),
            "BENCHMARK_LOG": str(log),
            "LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
        base = f"http://127.0.0.1:{port}"
        target = Target("bankllm", command, env, base, f"{base}/health", {}, {})
        with _serving(target) as process:
            result = asyncio.run(
                soak(
                    base,
                    log,
                    requests=args.requests,
                    concurrency=args.concurrency,
                    switch_every_s=args.switch_every,
                    models=("custom", "custom-b"),
                    pid=process.pid,
                )
            )
    print(result.report())
    growth = result.rss_mb["end"] / result.rss_mb.get("after 1000", result.rss_mb["end"]) - 1
    print(f"RSS growth after the first 1,000 requests: {growth:+.1%}")
    met = (
        result.failed == result.failed_streams == result.torn == result.switches["failed"] == 0
        and sum(result.rows.values()) == args.requests
        and result.ok_rows_answered
        and not any(result.gauges.values())
        and growth < 0.10
    )
    print(f"goal (0 failed, 0 lost or torn rows, 0 failed switches, RSS < +10%): {met}")


if __name__ == "__main__":
    main()
