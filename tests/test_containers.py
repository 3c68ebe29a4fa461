"""The CPU image built and run for real, and the compose profiles brought up, on this
machine's Docker engine (skipped, saying why, where none can be started). Containers use the
host's network; traffic goes to 127.0.0.1 only."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from app.banking.intents import IntentSet
from tests.containers import (
    base_image,
    build_cpu_image,
    docker,
    engine_problem,
    torch_index,
    torch_wheel,
    until_healthy,
)
from tests.fake_gemini import API_KEY as GEMINI_KEY
from tests.fake_gemini import ASK, REPLY_TEXT, FakeGemini
from tests.helpers import ROOT

pytestmark = pytest.mark.docker
USER, ADMIN = "container-user-key-0123", "container-admin-key-0123"
URL = "http://127.0.0.1:8000"  # the image listens on 8000; with the host's network, here
TAG = "bankllm:cpu-test"


@pytest.fixture(scope="module")
def image() -> str:
    if (problem := engine_problem()) is not None:
        pytest.skip(problem)
    if (wheel := torch_wheel()) is None:
        pytest.skip("no torch 2.13.0 CPU wheel on this machine to serve the build")
    with torch_index(wheel) as index:
        build_cpu_image(TAG, base_image(), index)
    return TAG


@pytest.fixture
def volume() -> Iterator[str]:
    name = f"bankllm-logs-{uuid.uuid4().hex[:8]}"
    yield name
    docker("volume", "rm", "-f", name, check=False)


def test_the_image_is_healthy_runs_as_10001_answers_logs_and_stops_on_sigterm(
    image: str, volume: str
) -> None:
    env = ["-e", f"API_KEYS={USER}", "-e", f"ADMIN_API_KEY={ADMIN}", "-e", "SHUTDOWN_GRACE_S=5"]
    container = docker(
        "run", "-d", "--network", "host", "-v", f"{volume}:/srv/bankllm/logs", *env, image
    ).strip()
    try:
        until_healthy(container)
        uid = docker("exec", container, "sh", "-c", "grep ^Uid: /proc/1/status").split()[1]
        answer = httpx.post(
            f"{URL}/generate",
            json={"prompt": "my card has not arrived", "max_tokens": 48, "temperature": 0},
            headers={"Authorization": f"Bearer {USER}"},
            timeout=60,
        )
        stopping = time.monotonic()
        docker("stop", "--time", "30", container)
        stopped_s = time.monotonic() - stopping
        state = json.loads(docker("inspect", "--format", "{{json .State}}", container))
    finally:
        docker("rm", "-f", container, check=False)
    rows = docker(
        "run",
        "--rm",
        "-v",
        f"{volume}:/logs",
        "--entrypoint",
        "cat",
        image,
        "/logs/benchmarks.jsonl",
    ).splitlines()
    assert uid == "10001"
    assert answer.status_code == 200
    assert answer.json()["intent"] in IntentSet.load().labels
    assert [json.loads(r)["status"] for r in rows if '"type":"request"' in r] == ["ok"]
    assert (state["ExitCode"], state["OOMKilled"]) == (0, False)
    assert stopped_s < 30  # SIGTERM, not the SIGKILL after the grace


def _compose(file: Path, *args: str) -> str:
    done = subprocess.run(
        [
            "docker-compose",
            "-f",
            str(file),
            "--project-directory",
            str(ROOT),
            "-p",
            "bankllmtest",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "API_KEYS": USER, "ADMIN_API_KEY": ADMIN},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _on_host_network(tmp_path: Path, service: str, **changes: object) -> Path:
    """docker-compose.yml with `service` on the host's network (no bridge here) and the test
    image: Compose 1.29 cannot unset `ports` and `networks` from an override file, so the
    override is applied to a copy. Everything else is the real file's."""
    config = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    entry = config["services"][service]
    for key in ("ports", "networks", "build"):
        entry.pop(key, None)
    entry.update(image=TAG, network_mode="host")
    for key, value in changes.items():
        target = config if key == "secrets" else entry
        target[key] = value if not isinstance(value, dict) else {**target.get(key, {}), **value}
    file = tmp_path / "docker-compose.host.yml"
    file.write_text(yaml.safe_dump(config))
    return file


def _profile_key(profile: str) -> dict[str, str]:
    """The user key compose passed the profile from its environment."""
    return {"Authorization": f"Bearer {USER}"}


def _answer_when_healthy(file: Path, profile: str) -> httpx.Response:
    """Bring the profile up, wait for its health check, ask it once, and take it down."""
    try:
        _compose(file, "--profile", profile, "up", "-d", "--no-build")
        until_healthy(_compose(file, "ps", "-q", f"bankllm-{profile}").strip())
        return httpx.post(f"{URL}/generate", json=ASK, headers=_profile_key(profile), timeout=60)
    finally:
        _compose(file, "--profile", profile, "down", "-v")


def test_the_custom_profile_comes_up_healthy_and_answers(image: str, tmp_path: Path) -> None:
    file = _on_host_network(tmp_path, "bankllm-custom")
    answer = _answer_when_healthy(file, "custom")
    assert answer.status_code == 200
    assert answer.json()["intent"] in IntentSet.load().labels


def test_the_gemini_profile_takes_its_key_from_a_secret_file_never_the_image(
    image: str, tmp_path: Path, gemini_upstream: tuple[FakeGemini, str]
) -> None:
    fake, upstream = gemini_upstream
    fake.reset()
    secret = tmp_path / "gemini_api_key"
    secret.write_text(GEMINI_KEY)
    file = _on_host_network(
        tmp_path,
        "bankllm-gemini",
        environment={"GEMINI_BASE_URL": upstream},
        secrets={"gemini_api_key": {"file": str(secret)}},
    )
    answer = _answer_when_healthy(file, "gemini")
    layers = docker("history", "--no-trunc", TAG)
    config = docker("inspect", "--format", "{{json .Config.Env}}", TAG)
    assert (answer.status_code, answer.json()["text"]) == (200, REPLY_TEXT)
    assert fake.received[-1].key == GEMINI_KEY  # from /run/secrets, through the real SDK
    assert GEMINI_KEY not in layers
    assert GEMINI_KEY not in config
