"""What a user installs is what the suite tests: `make install` (the install `make run` does)
into a fresh environment gives the versions the suite runs on, and a `bankllm serve` started
from that environment refuses every route without its key.

It installs from the package registry (PyPI) and PyTorch's CPU wheel as `make` does: a minute
or two, most of it torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.access_walk import faults, walk
from tests.helpers import ROOT
from tests.lockfiles import LOCKS, installed, pins
from tests.process import service_process

pytestmark = pytest.mark.anyio
KEYS: dict[str, str | None] = {
    "none": None,
    "wrong": "wrong-key-0123456789abc",
    "user": "user-key-0123456789abcdef",
    "admin": "admin-key-0123456789abcdef",
}


@pytest.fixture(scope="module")
def run_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment made by `make install`, exactly as `make run` makes `.venv`."""
    venv = tmp_path_factory.mktemp("run") / "venv"
    done = subprocess.run(
        ["make", "--no-print-directory", "install", f"VENV={venv}", f"PYTHON={sys.executable}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return venv


def test_make_run_installs_the_run_lock_and_the_suite_runs_the_same_versions(
    run_env: Path,
) -> None:
    theirs, ours = installed(run_env / "bin" / "python"), installed(sys.executable)
    locked = pins(LOCKS / "run.txt")
    assert {n: theirs.get(n) for n in locked if theirs.get(n) != locked[n]} == {}
    shared = (theirs.keys() & ours.keys()) - {"bankllm"}
    assert {n: (theirs[n], ours[n]) for n in shared if theirs[n] != ours[n]} == {}
    assert "fastapi" in shared


async def test_a_served_install_refuses_every_route_without_its_key(
    run_env: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models.json"  # a second name for the embedded model, for /shadow
    models.write_text(json.dumps({"models": [{"name": "custom-b", "backend": "custom"}]}))
    env = {
        "API_KEYS": str(KEYS["user"]),
        "ADMIN_API_KEY": str(KEYS["admin"]),
        "MODELS_FILE": str(models),
        "CUSTOM_COMPILE": "false",
        "BENCHMARK_LOG": str(tmp_path / "bench.jsonl"),
        "PYTHONPATH": "",
    }
    program = (str(run_env / "bin" / "bankllm"),)
    with service_process(env, tmp_path, program=program, timeout_s=180) as process:
        async with httpx.AsyncClient(base_url=process.url, timeout=60) as client:
            document = (await client.get("/openapi.json")).json()
            routes = [
                (method.upper(), path)
                for path, operations in document["paths"].items()
                for method in operations
            ]
            routes += [("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/redoc")]
            answers = await walk(client, routes, KEYS)
    assert faults(answers) == []
    assert {("POST", "/v1/chat/completions"), ("POST", "/switch")} <= answers.keys()
