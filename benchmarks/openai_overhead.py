"""What the OpenAI shapes cost, side by side in one run:

1. `/v1/chat/completions` against `/generate` on one `echo` server, with `hey` at c=1 and c=32,
   in alternating rounds (goal: /v1 at least 0.9x the requests/s of /generate);
2. our `/v1/chat/completions` on the qlora model's vLLM engine against vLLM's own OpenAI server,
   the same tiny Llama and LoRA, the same streamed load (goal: at least 0.9x output tokens/s).

    python -m benchmarks.openai_overhead [--rounds 3] [--seconds 8] [--requests 48] [--no-vllm]

Needs `hey` (Debian: apt-get install hey) and, for part 2, CPU vLLM (`make install-test`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.overhead import KEY, PROMPT, Result, Target, _free_port, _hey, _serving
from benchmarks.vllm_overhead import _theirs, chat, load, median, tiny_llama_servers
from tests.tiny_llama import build_adapter, build_base

LEVELS = (1, 32)
VLLM_LEVELS = (1, 8)


def _echo_targets(workdir: Path) -> tuple[Target, Target]:
    port = _free_port()
    env = {
        "ACTIVE_MODEL": "echo",
        "ENABLE_ECHO_MODEL": "true",
        "API_KEYS": KEY,
        "LOG_LEVEL": "WARNING",
        "BENCHMARK_LOG": str(workdir / "echo.jsonl"),
        "MAX_CONCURRENCY": "64",
        "MAX_QUEUE": "1024",
    }
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    base, health = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/health"
    auth = {"Authorization": f"Bearer {KEY}"}
    chat_body = {"messages": [{"role": "user", "content": PROMPT["prompt"]}], "max_tokens": 32}
    return (
        Target("/generate", command, env, f"{base}/generate", health, PROMPT, auth),
        Target(
            "/v1/chat/completions",
            command,
            env,
            f"{base}/v1/chat/completions",
            health,
            chat_body,
            auth,
        ),
    )


def echo_part(rounds: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        generate, v1 = _echo_targets(Path(tmp))
        runs: dict[str, dict[int, list[Result]]] = {t.name: {} for t in (generate, v1)}
        for by_level in runs.values():
            by_level.update({c: [] for c in LEVELS})
        with _serving(generate):  # one server: both routes share its process
            _hey(generate, 8, 2)
            _hey(v1, 8, 2)
            for r in range(rounds):
                for target in (generate, v1) if r % 2 == 0 else (v1, generate):
                    for c in LEVELS:
                        runs[target.name][c].append(_hey(target, c, seconds))
    print(f"\n1. echo model, one server, hey, median of {rounds} rounds")
    print(f"{'route':<24}" + "".join(f"{f'c={c} req/s':>12}{'p50 ms':>9}" for c in LEVELS))
    for name, by_level in runs.items():
        cells = ""
        for c in LEVELS:
            rs = by_level[c]
            cells += f"{statistics.median(r.requests_per_s for r in rs):>12.0f}"
            cells += f"{statistics.median(r.p50_ms for r in rs):>9.2f}"
        print(f"{name:<24}{cells}")
    ratios = []
    for c in LEVELS:
        new = statistics.median(r.requests_per_s for r in runs[v1.name][c])
        old = statistics.median(r.requests_per_s for r in runs[generate.name][c])
        ratios.append(f"c={c}: {new / old:.2f}x")
    errors = sum(r.errors for by in runs.values() for rs in by.values() for r in rs)
    print(f"/v1/chat/completions / /generate: {', '.join(ratios)} (goal 0.9x); non-200: {errors}")


def vllm_part(rounds: int, requests: int, max_tokens: int) -> None:
    ours_chat = functools.partial(_model_chat, "qlora")
    with tempfile.TemporaryDirectory() as tmp:
        base = build_base(Path(tmp) / "base")
        adapter = build_adapter(base, Path(tmp) / "adapter")
        theirs, generate = tiny_llama_servers(base, adapter, Path(tmp))
        ours = dataclasses.replace(generate, name="bankllm /v1 (vLLM engine)")
        runs: dict[str, list[dict[int, dict[str, Any]]]] = {theirs.name: [], ours.name: []}
        for r in range(rounds):
            pair = [(theirs, _theirs), (ours, ours_chat)]
            for target, one in pair if r % 2 == 0 else pair[::-1]:
                with _serving(target):
                    runs[target.name].append(
                        {
                            c: asyncio.run(load(target.url, one, c, requests, max_tokens))
                            for c in VLLM_LEVELS
                        }
                    )
    print(f"\n2. tiny Llama + LoRA, float32, streamed chat, median of {rounds} rounds")
    print(f"{'server':<28}" + "".join(f"{f'c={c} tok/s':>13}{'TTFT ms':>9}" for c in VLLM_LEVELS))
    for name, levels in runs.items():
        cells = ""
        for c in VLLM_LEVELS:
            cells += f"{median(levels, 'output_throughput', c):>13.1f}"
            cells += f"{median(levels, 'mean_ttft_ms', c):>9.1f}"
        print(f"{name:<28}{cells}")
    tokens = {
        n: {c: median(ls, "output_throughput", c) for c in VLLM_LEVELS} for n, ls in runs.items()
    }
    ratios = ", ".join(
        f"c={c}: {tokens[ours.name][c] / tokens[theirs.name][c]:.2f}x" for c in VLLM_LEVELS
    )
    failed = sum(lv[c]["failed"] for ls in runs.values() for lv in ls for c in VLLM_LEVELS)
    print(f"bankllm /v1 / vLLM output tokens/s: {ratios} (goal 0.9x); failed: {failed}")


async def _model_chat(model: str, client: Any, prompt: str, max_tokens: int) -> Any:
    return await chat(client, model, None, prompt, max_tokens)  # our adapter adds its prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="hey, per route and level")
    parser.add_argument("--requests", type=int, default=48, help="vLLM part, per level")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--no-vllm", action="store_true", help="the echo part only")
    args = parser.parse_args()
    if shutil.which("hey") is None:
        raise SystemExit("needs hey: apt-get install hey")
    echo_part(args.rounds, args.seconds)
    if not args.no_vllm:
        vllm_part(args.rounds, args.requests, args.max_tokens)


if __name__ == "__main__":
    main()
