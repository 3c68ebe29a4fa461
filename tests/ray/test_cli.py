"""`bankllm serve --ray --replicas 2` as a user runs it: it starts its own local cluster, serves
the README's first curl and the OpenAI SDK through Ray's proxy, switches both replicas, and stops on
SIGTERM with exit 0 and every row written."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from app.telemetry.logfiles import log_files, read_log
from tests.helpers import ADMIN_KEY, USER_KEY
from tests.process import service_process
from tests.ray.conftest import free_port

SERVING = re.compile(r"serving on (http://127\.0\.0\.1:\d+) with 2 replica\(s\) on Ray Serve")


def test_serve_ray_replicas_2_serves_curl_and_the_sdk_and_stops(
    tmp_path: Path, checkpoints: dict[str, Path]
) -> None:
    log = tmp_path / "logs" / "bench.jsonl"
    env = {
        "CUSTOM_CHECKPOINT": str(checkpoints["a"]),
        "ENABLE_ECHO_MODEL": "true",
        "API_KEYS": USER_KEY,
        "ADMIN_API_KEY": ADMIN_KEY,
        "BENCHMARK_LOG": str(log),
    }
    args = ("--ray", "--replicas", "2", "--port", str(free_port()))
    with service_process(env, tmp_path, args, SERVING, timeout_s=180) as process:
        user = {"Authorization": f"Bearer {USER_KEY}"}
        with httpx.Client(base_url=process.url, headers=user, timeout=60) as client:
            # the README's first curl
            plain = client.post(
                "/generate", json={"prompt": "I still have not received my new card"}
            )
            switch = client.post(
                "/switch", json={"model": "echo"}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
            )
        sdk = openai.OpenAI(base_url=f"{process.url}/v1", api_key=USER_KEY, max_retries=0)
        chat = sdk.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "hello there"}]
        )
        sdk.close()
        process.popen.send_signal(signal.SIGTERM)
        assert process.popen.wait(timeout=120) == 0, process.log
    assert plain.status_code == 200, plain.text
    assert plain.json()["model"] == "custom"
    assert switch.status_code == 200, switch.text
    assert [r["model"] for r in switch.json()["replicas"]] == ["echo", "echo"]
    assert chat.model == "echo"
    assert chat.choices[0].message.content
    assert len(log_files(log)) == 2  # one file per replica
    requests = [r for r in read_log(log) if r["type"] == "request"]
    assert sorted(r["api"] for r in requests) == ["chat", "generate"]


def test_serve_refuses_ray_flags_without_ray() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--replicas", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (
        2,
        "bankllm serve: --replicas, --autoscale and --address need --ray\n",
    )


@pytest.mark.parametrize("spec", ["3", "2:1", "0:2", "a:b"])
def test_serve_refuses_a_bad_autoscale(spec: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--ray", "--autoscale", spec],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        f"bankllm serve: --autoscale takes MIN:MAX with 0 < MIN <= MAX, not {spec!r}\n"
    )
