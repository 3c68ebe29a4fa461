"""Seconds from SIGTERM to exit for `bankllm serve` with streams in flight: the upstream (the
fake Gemini, held) answers a second after the signal, or never (the grace runs out).

    python -m benchmarks.graceful_stop [--streams 8]
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.fake_gemini import API_KEY, ASK, FakeGemini, Fault
from tests.helpers import ADMIN_KEY, USER_KEY, serving
from tests.process import service_process


def _stop(
    upstream: str, fake: FakeGemini, streams: int, grace_s: float, answer_after: float | None
) -> str:
    folder = Path(tempfile.mkdtemp(prefix="bankllm-stop-"))
    env = {
        "ACTIVE_MODEL": "gemini",
        "GEMINI_API_KEY": API_KEY,
        "GEMINI_BASE_URL": upstream,
        "API_KEYS": USER_KEY,
        "ADMIN_API_KEY": ADMIN_KEY,
        "BENCHMARK_LOG": str(folder / "bench.jsonl"),
        "SHUTDOWN_GRACE_S": str(grace_s),
    }
    hold = threading.Event()
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    with service_process(env, folder) as process, ThreadPoolExecutor(streams) as pool:
        arrived = len(fake.received)
        fake.faults.extend([Fault(hold=hold, hold_after=3)] * streams)

        def stream() -> str:
            body = ASK | {"stream": True}
            with httpx.stream(
                "POST", f"{process.url}/generate", json=body, headers=headers, timeout=60
            ) as response:
                events = response.read().decode()
                return "error" if '"error"' in events else "whole"

        ends = [pool.submit(stream) for _ in range(streams)]
        assert fake.wait_received(arrived + streams, timeout_s=30)
        signalled = time.monotonic()
        process.popen.send_signal(signal.SIGTERM)
        if answer_after is not None:
            threading.Timer(answer_after, hold.set).start()
        code = process.popen.wait(timeout=120)
        seconds = time.monotonic() - signalled
        outcomes = [e.result() for e in ends]
        hold.set()
    when = f"answers {answer_after:g} s after" if answer_after is not None else "never answers"
    return (
        f"upstream {when}, SHUTDOWN_GRACE_S={grace_s:g}: exit {code} in {seconds:.2f} s; "
        f"streams {dict((o, outcomes.count(o)) for o in sorted(set(outcomes)))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=8)
    args = parser.parse_args()
    fake = FakeGemini()
    with serving(fake.app()) as upstream:
        print(_stop(upstream, fake, args.streams, grace_s=30, answer_after=1.0))
        print(_stop(upstream, fake, args.streams, grace_s=2, answer_after=None))


if __name__ == "__main__":
    main()
