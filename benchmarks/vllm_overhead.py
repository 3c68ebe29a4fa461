"""Our /generate on the qlora model (vLLM engine in-process) against vLLM's own OpenAI server,
with the same tiny Llama and LoRA, the same streamed load, at c=1 and c=8 (and our transformers
engine beside them, for reference).

    python -m benchmarks.vllm_overhead [--requests 48] [--max-tokens 64] [--rounds 3]

Needs CPU vLLM (`make install-test`). The servers run one after the other, so neither competes with
the other for this machine's cores. Goal: ours at least 0.9x vLLM's own output throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from app.backends.qlora.prompting import SYSTEM_PROMPT
from app.evaluation.loadtest import Outcome, figures
from benchmarks.overhead import KEY, Target, _free_port, _serving
from tests.tiny_llama import build_adapter, build_base

PROMPTS = ["my card has not arrived", "I lost my card", "how do I top up by bank transfer"]
LEVELS = (1, 8)
KV_CACHE = 256 * 2**20


async def _ours(client: httpx.AsyncClient, prompt: str, max_tokens: int) -> Outcome:
    outcome = Outcome(start=time.perf_counter())
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    async with client.stream("POST", "/generate", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if "error" in event:
                outcome.error = event["error"]["type"]
            elif "delta" in event:
                outcome.first_token = outcome.first_token or time.perf_counter()
                outcome.token_times.append(time.perf_counter())
            else:
                outcome.prompt_tokens = event["prompt_tokens"]
                outcome.output_tokens = event["completion_tokens"]
    outcome.end = time.perf_counter()
    return outcome


async def _theirs(client: httpx.AsyncClient, prompt: str, max_tokens: int) -> Outcome:
    """vLLM's server: the LoRA by the name given to --lora-modules, our system prompt sent."""
    return await chat(client, "bankllm", SYSTEM_PROMPT, prompt, max_tokens)


async def chat(
    client: httpx.AsyncClient, model: str, system: str | None, prompt: str, max_tokens: int
) -> Outcome:
    """One streamed /v1/chat/completions with usage, timed as `bankllm bench` times."""
    outcome = Outcome(start=time.perf_counter())
    turns = [{"role": "system", "content": system}] if system else []
    body = {
        "model": model,
        "messages": [*turns, {"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                outcome.prompt_tokens = event["usage"]["prompt_tokens"]
                outcome.output_tokens = event["usage"]["completion_tokens"]
            for choice in event.get("choices", []):
                if choice.get("delta", {}).get("content"):
                    outcome.first_token = outcome.first_token or time.perf_counter()
                    outcome.token_times.append(time.perf_counter())
        if response.status_code != 200:
            outcome.error = f"http_{response.status_code}"
    outcome.end = time.perf_counter()
    return outcome


async def load(
    url: str, one: Any, concurrency: int, requests: int, max_tokens: int
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as client:
        await one(client, PROMPTS[0], max_tokens)  # warm-up
        order = iter(range(requests))
        outcomes: list[Outcome] = []

        async def worker() -> None:
            for i in order:
                outcomes.append(await one(client, PROMPTS[i % len(PROMPTS)], max_tokens))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return figures(outcomes, time.perf_counter() - started)


def tiny_llama_servers(base: Path, adapter: Path, workdir: Path) -> tuple[Target, Target]:
    """vLLM's OpenAI server and ours (qlora, vLLM engine) on the same tiny Llama and LoRA."""
    python = sys.executable
    vllm_port, ours_port = _free_port(), _free_port()
    theirs = Target(
        "vLLM OpenAI server",
        [
            python,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(base),
            "--enable-lora",
            "--lora-modules",
            f"bankllm={adapter}",
            "--max-lora-rank",
            "16",
            "--max-model-len",
            "512",
            "--dtype",
            "float32",
            "--kv-cache-memory-bytes",
            str(KV_CACHE),
            "--port",
            str(vllm_port),
            "--disable-log-stats",
        ],
        {},
        f"http://127.0.0.1:{vllm_port}",
        f"http://127.0.0.1:{vllm_port}/health",
        {},
        {},
    )
    ours = Target(
        "bankllm (qlora, vLLM engine)",
        [python, "-m", "app.cli", "serve", "--port", str(ours_port)],
        {
            "ACTIVE_MODEL": "qlora",
            "QLORA_BASE_MODEL": str(base),
            "QLORA_ADAPTER": str(adapter),
            "QLORA_ENGINE": "vllm",
            "QLORA_QUANTIZATION": "none",
            "QLORA_DTYPE": "float32",
            "QLORA_MAX_MODEL_LEN": "512",
            "QLORA_KV_CACHE_BYTES": str(KV_CACHE),
            "API_KEYS": KEY,
            "LOG_LEVEL": "WARNING",
            "BENCHMARK_LOG": str(workdir / "bench.jsonl"),
            "MAX_CONCURRENCY": "64",
        },
        f"http://127.0.0.1:{ours_port}",
        f"http://127.0.0.1:{ours_port}/health",
        {},
        {},
    )
    return theirs, ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=48, help="per level")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="pairs of runs, alternating order")
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        base = build_base(Path(tmp) / "base")
        adapter = build_adapter(base, Path(tmp) / "adapter")
        theirs, ours = tiny_llama_servers(base, adapter, Path(tmp))
        hf_port = _free_port()
        transformers_engine = Target(
            "bankllm (qlora, transformers)",
            [python, "-m", "app.cli", "serve", "--port", str(hf_port)],
            ours.env | {"QLORA_ENGINE": "transformers"},
            f"http://127.0.0.1:{hf_port}",
            f"http://127.0.0.1:{hf_port}/health",
            {},
            {},
        )
        # Each round measures both servers, in alternating order; this machine is noisy, so
        # the table gives each figure's median over the rounds.
        runs: dict[str, list[dict[int, dict[str, Any]]]] = {}
        schedule = [(transformers_engine, _ours)]
        for r in range(args.rounds):
            pair = [(theirs, _theirs), (ours, _ours)]
            schedule += pair if r % 2 == 0 else pair[::-1]
        for target, one in schedule:
            started = time.perf_counter()
            with _serving(target):
                print(f"{target.name}: ready in {time.perf_counter() - started:.1f} s")
                runs.setdefault(target.name, []).append(
                    {
                        c: asyncio.run(load(target.url, one, c, args.requests, args.max_tokens))
                        for c in LEVELS
                    }
                )
    header = "".join(f"{f'c={c} tok/s':>13}{'TTFT ms':>9}{'tok/req':>8}{'fail':>6}" for c in LEVELS)
    print(f"\n{'server (median of rounds)':<30}{header}")
    for name in (theirs.name, ours.name, transformers_engine.name):
        row = f"{name:<30}"
        for c in LEVELS:
            levels = [run[c] for run in runs[name]]
            per = sum(f["total_output_tokens"] for f in levels) / max(
                1, sum(f["completed"] for f in levels)
            )
            row += f"{median(levels, 'output_throughput'):>13.1f}"
            row += f"{median(levels, 'mean_ttft_ms'):>9.1f}{per:>8.1f}"
            row += f"{sum(f['failed'] for f in levels):>6}"
        print(row)
    for c in LEVELS:
        each = [
            m[c]["output_throughput"] / v[c]["output_throughput"]
            for m, v in zip(runs[ours.name], runs[theirs.name], strict=True)
        ]
        ratio = median(runs[ours.name], "output_throughput", c) / median(
            runs[theirs.name], "output_throughput", c
        )
        rounds = ", ".join(f"{x:.2f}x" for x in each)
        print(f"c={c}: bankllm / vLLM output throughput {ratio:.2f}x (rounds: {rounds}); goal 0.9x")


def median(rows: list[Any], key: str, level: int | None = None) -> float:
    values = sorted(float((r[level] if level is not None else r)[key] or 0) for r in rows)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


if __name__ == "__main__":
    main()
