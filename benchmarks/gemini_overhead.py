"""The gemini adapter's own cost: our /generate on the gemini model (SDK, retries, breaker, PII
redaction, auth, metrics and the JSONL log all on) against the same request sent straight to
the upstream, a local fake Gemini server, each driven by `hey` at c=1 and c=16.

    python -m benchmarks.gemini_overhead [--seconds 10]

The overhead is our p50 minus the upstream's. Both servers share this machine's cores, so the
figures are an upper bound of what the adapter adds in front of a remote Gemini.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

from app.banking.intents import IntentSet
from benchmarks.overhead import (
    KEY,
    ROOT,
    Result,
    Target,
    _free_port,
    _hey,
    _serving,
    print_table,
)
from tests.fake_gemini import API_KEY

PROMPT = "I still have not received my new card"
LEVELS = (1, 16)


def _targets(workdir: Path, upstream: str) -> list[Target]:
    python = sys.executable
    port = _free_port()
    direct_body: dict[str, object] = {
        "contents": [{"parts": [{"text": PROMPT}], "role": "user"}],
        "systemInstruction": {"parts": [{"text": IntentSet.load().system_prompt()}]},
        "generationConfig": {"maxOutputTokens": 64, "temperature": 0.0, "topP": 1.0},
    }
    return [
        Target(
            "upstream (fake Gemini)",
            [],
            {},
            f"{upstream}/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            "",
            direct_body,
            {"x-goog-api-key": API_KEY},
        ),
        Target(
            "bankllm -> gemini",
            [python, "-m", "app.cli", "serve", "--port", str(port)],
            {
                "ACTIVE_MODEL": "gemini",
                "GEMINI_API_KEY": API_KEY,
                "GEMINI_BASE_URL": upstream,
                "API_KEYS": KEY,
                "LOG_LEVEL": "WARNING",
                "BENCHMARK_LOG": str(workdir / "bench.jsonl"),
                "MAX_CONCURRENCY": "64",
                "MAX_QUEUE": "1024",
            },
            f"http://127.0.0.1:{port}/generate",
            f"http://127.0.0.1:{port}/health",
            {"prompt": PROMPT, "max_tokens": 64, "temperature": 0},
            {"Authorization": f"Bearer {KEY}"},
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per target and level")
    args = parser.parse_args()
    port = _free_port()
    upstream = f"http://127.0.0.1:{port}"
    fake = Target(
        "fake Gemini",
        [sys.executable, "-m", "tests.fake_gemini", "--port", str(port)],
        {},
        "",
        f"{upstream}/v1/models/gemini-2.5-flash",
        {},
        {},
    )
    results: dict[str, dict[int, Result]] = {}
    with tempfile.TemporaryDirectory() as tmp, _serving(fake):
        for target in _targets(Path(tmp), upstream):
            with _serving(target) if target.command else nullcontext():
                _hey(target, 4, 2)  # warm-up
                results[target.name] = {c: _hey(target, c, args.seconds) for c in LEVELS}
    print_table(results, LEVELS, 26)
    ours, upstream_r = results["bankllm -> gemini"], results["upstream (fake Gemini)"]
    for c in LEVELS:
        print(
            f"c={c}: adapter overhead at p50 {ours[c].p50_ms - upstream_r[c].p50_ms:.2f} ms "
            f"(ours {ours[c].p50_ms:.2f} ms, upstream {upstream_r[c].p50_ms:.2f} ms)"
        )
    print(f"(run from {ROOT})")


if __name__ == "__main__":
    main()
