"""Dockerfile.gpu's install step, resolved against what its base image ships (issue 17, part 5).

vLLM's CUDA image cannot be pulled or built here, so its site-packages is stood in for by what
pip resolves for the same vLLM release (the tag in the Dockerfile's FROM line) on the image's
Python, 3.12: each of those distributions is written into a fresh virtual environment as
installed metadata (name, version, requirements, extras) and nothing else. The Dockerfile's own
`pip install` then runs against that environment with `--dry-run --report`: whatever pip would
install is in the report, so a step that replaces torch or vllm, or anything else the image
brings, shows there by name.

The two resolutions ask the package registry (PyPI) for metadata only (about 40 s).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import ROOT
from tests.lockfiles import pins

DOCKERFILE = ROOT / "Dockerfile.gpu"
IMAGE_PYTHON = "python3.12"  # vllm/vllm-openai images run Python 3.12


@dataclass(frozen=True)
class Image:
    """The stand-in of the base image: an environment and the distributions it holds."""

    python: str
    vllm: str
    shipped: Mapping[str, str]  # canonical name -> version
    vllm_requires: tuple[str, ...]


def _vllm_release() -> str:
    match = re.search(r"^FROM vllm/vllm-openai:v(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, "Dockerfile.gpu no longer starts FROM a vllm/vllm-openai release tag"
    return match.group(1)


def _install_extras() -> str:
    """The extras the image installs by default, held to the GPU lock: `pip install -c
    requirements/gpu.txt ".[${EXTRAS}]"`, EXTRAS an ARG."""
    text = DOCKERFILE.read_text()
    step = 'pip install -c requirements/gpu.txt ".[${EXTRAS}]"'
    assert step in text, f"Dockerfile.gpu no longer runs {step}"
    match = re.search(r"^ARG EXTRAS=(\S+)$", text, re.MULTILINE)
    assert match, "Dockerfile.gpu no longer gives EXTRAS a default"
    return f"[{match.group(1)}]"


Installs = list[dict[str, Any]]  # the "install" items of a pip report


def _resolve(python: str, report: Path, *requirements: str, fresh: bool = False) -> Installs:
    """What pip would install into `python`'s environment for `requirements` (its report)."""
    command = [sys.executable, "-m", "pip", "--python", python, "install", "--dry-run"]
    command += ["--quiet", "--report", str(report), *(["--ignore-installed"] if fresh else [])]
    # No pip configuration of this machine's (its torch cap would hide what pip wants).
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(
        [*command, *requirements], env=env, capture_output=True, text=True, timeout=600
    )
    offline = re.search(r"NewConnectionError|Could not fetch URL|resolve", done.stderr)
    if done.returncode and offline:
        pytest.skip(f"the package registry is not reachable: {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    installs: Installs = json.loads(report.read_text())["install"]
    return installs


def _versions(installs: Installs) -> dict[str, str]:
    return {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in installs}


def _stand_in(site_packages: Path, installs: Installs) -> None:
    """Each resolved distribution as installed metadata only: what pip reads of an install."""
    for item in installs:
        meta = item["metadata"]
        lines = ["Metadata-Version: 2.1", f"Name: {meta['name']}", f"Version: {meta['version']}"]
        lines += [f"Provides-Extra: {extra}" for extra in meta.get("provides_extra", [])]
        lines += [f"Requires-Dist: {req}" for req in meta.get("requires_dist", [])]
        stem = canonicalize_name(meta["name"]).replace("-", "_")  # as a wheel names its folder
        info = site_packages / f"{stem}-{meta['version']}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("\n".join(lines) + "\n")
        (info / "INSTALLER").write_text("pip\n")


def _image_python() -> str | None:
    """A working Python 3.12: on PATH, or one that pyenv has but has not made current."""
    found = shutil.which(IMAGE_PYTHON)
    if found and subprocess.run([found, "-c", ""], capture_output=True).returncode == 0:
        return found
    if shutil.which("pyenv") is None:
        return None
    whence = subprocess.run(["pyenv", "whence", IMAGE_PYTHON], capture_output=True, text=True)
    if whence.returncode or not whence.stdout.split():
        return None
    env = {**os.environ, "PYENV_VERSION": whence.stdout.split()[0]}
    which = subprocess.run(
        ["pyenv", "which", IMAGE_PYTHON], env=env, capture_output=True, text=True
    )
    return which.stdout.strip() or None


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    interpreter = _image_python()
    if interpreter is None:
        pytest.skip(f"no {IMAGE_PYTHON} here to stand in for the image's Python")
    root = tmp_path_factory.mktemp("gpu-image")
    subprocess.run([interpreter, "-m", "venv", "--without-pip", str(root / "env")], check=True)
    python = str(root / "env" / "bin" / "python")
    vllm = _vllm_release()
    installs = _resolve(python, root / "image.json", f"vllm=={vllm}", fresh=True)
    site_packages = next((root / "env" / "lib").glob("python3*/site-packages"))
    _stand_in(site_packages, installs)
    (vllm_meta,) = (i["metadata"] for i in installs if i["metadata"]["name"] == "vllm")
    return Image(python, vllm, _versions(installs), tuple(vllm_meta["requires_dist"]))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build context as the Dockerfile's install step sees it: the two files, an empty app."""
    src = tmp_path_factory.mktemp("gpu-context")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    (src / "app").mkdir()
    (src / "app" / "__init__.py").touch()
    return src


def _install(image: Image, *requirements: str) -> tuple[dict[str, str], dict[str, str]]:
    """What installing `requirements` into the image would add, and what it would replace."""
    with tempfile.TemporaryDirectory() as scratch:
        versions = _versions(_resolve(image.python, Path(scratch) / "r.json", *requirements))
    added = {name: new for name, new in versions.items() if name not in image.shipped}
    return added, {name: new for name, new in versions.items() if name in image.shipped}


def test_the_stand_in_is_the_release_the_dockerfile_names(image: Image) -> None:
    pins = {Requirement(r).name: Requirement(r).specifier for r in image.vllm_requires}
    assert image.shipped["vllm"] == image.vllm
    assert image.shipped["torch"] in pins["torch"]  # the torch vLLM's release pins (==)
    assert str(pins["torch"]).startswith("==")


def test_the_gpu_install_step_keeps_the_images_torch_and_vllm_and_holds_the_rest_to_the_lock(
    image: Image, project: Path
) -> None:
    lock = ROOT / "requirements" / "gpu.txt"
    added, replaced = _install(image, "-c", str(lock), f"{project}{_install_extras()}")
    pinned = pins(lock)
    # a package the image ships moves only to the lock's version (a CUDA binding, say), never
    # torch or vLLM themselves
    assert {n: v for n, v in replaced.items() if pinned.get(n) != v} == {}
    assert {"torch", "vllm"}.isdisjoint(replaced)
    assert {n: v for n, v in added.items() if n != "bankllm" and pinned.get(n) != v} == {}
    # What the step is there for: the qlora engine's libraries and the Gemini SDK, beside vLLM's.
    assert {"bankllm", "peft", "bitsandbytes", "accelerate", "google-genai"} <= added.keys()


def test_a_step_that_would_replace_torch_is_seen(image: Image) -> None:
    older = f"torch<{image.shipped['torch']}"
    _, replaced = _install(image, older)
    assert "torch" in replaced  # with the CUDA libraries that torch release pins
    assert replaced["torch"] in Requirement(older).specifier
