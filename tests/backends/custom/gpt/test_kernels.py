"""The compiled step's kernels in a folder of the service's own: one that a killed process
left half-written, or whose kernels fail to load, is emptied and compiled into afresh."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.backends.custom.gpt.kernels import COMPLETE, compile_in, kernel_folder
from tests.helpers import ROOT


def test_the_folder_is_the_services_own_and_per_torch_release(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("BANKLLM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    import torch

    assert kernel_folder() == tmp_path / "bankllm" / f"inductor-{torch.__version__}"
    monkeypatch.setenv("BANKLLM_CACHE_DIR", str(tmp_path / "own"))
    assert kernel_folder().parent == tmp_path / "own"


def test_a_folder_never_marked_whole_is_emptied_before_the_compile(tmp_path: Path) -> None:
    folder = tmp_path / "kernels"
    folder.mkdir()
    (folder / "half-written.so").write_bytes(b"")
    seen: list[list[str]] = []

    def compile_step() -> str:
        seen.append(sorted(p.name for p in folder.iterdir()) if folder.exists() else [])
        return "step"

    assert compile_in(folder, compile_step, threading.Event()) == "step"
    assert seen == [[]]
    assert (folder / COMPLETE).is_file()


def test_kept_kernels_that_fail_are_removed_and_compiled_once_more(tmp_path: Path) -> None:
    folder = tmp_path / "kernels"
    folder.mkdir()
    (folder / COMPLETE).touch()
    (folder / "broken.so").write_bytes(b"")
    tries: list[bool] = []

    def compile_step() -> str:
        tries.append((folder / "broken.so").exists())
        if len(tries) == 1:
            raise OSError("file too short")
        return "step"

    assert compile_in(folder, compile_step, threading.Event()) == "step"
    assert tries == [True, False]
    assert (folder / COMPLETE).is_file()


def test_a_failure_in_a_fresh_folder_is_the_compilers_and_is_raised(tmp_path: Path) -> None:
    def compile_step() -> str:
        raise RuntimeError("no compiler")

    with pytest.raises(RuntimeError, match="no compiler"):
        compile_in(tmp_path / "kernels", compile_step, threading.Event())
    assert not (tmp_path / "kernels" / COMPLETE).exists()


def test_a_compile_stopped_part_way_leaves_the_folder_unmarked(tmp_path: Path) -> None:
    folder = tmp_path / "kernels"
    folder.mkdir()
    (folder / COMPLETE).touch()
    assert compile_in(folder, lambda: None, threading.Event()) is None
    assert not (folder / COMPLETE).exists()


def test_a_step_closed_while_another_process_compiles_stops_waiting(tmp_path: Path) -> None:
    folder, stop = tmp_path / "kernels", threading.Event()
    tmp_path.joinpath("kernels.lock").touch()
    calls: list[str] = []
    with open(tmp_path / "kernels.lock") as other:  # another open file: another holder
        fcntl.flock(other, fcntl.LOCK_EX)
        waiting = threading.Thread(
            target=lambda: calls.append(str(compile_in(folder, lambda: "step", stop)))
        )
        waiting.start()
        stop.set()
        waiting.join(timeout=30)
    assert (waiting.is_alive(), calls) == (False, ["None"])


def _probe(cache: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.compile_probe"],
        cwd=ROOT,
        env={**os.environ, "BANKLLM_CACHE_DIR": str(cache)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _verdict(cache: Path) -> tuple[str, str]:
    out, err = _probe(cache).communicate(timeout=600)
    return out.strip(), err


def test_kernels_truncated_by_a_killed_process_are_found_and_compiled_again(
    tmp_path: Path,
) -> None:
    assert _verdict(tmp_path)[0] == "compiled"
    folder = kernel_folder(tmp_path)
    libraries = list(folder.rglob("*.so"))
    assert libraries, "the compile left no kernels in the service's folder"
    for library in libraries:  # what a process killed while writing them left behind
        library.write_bytes(b"")
    verdict, log = _verdict(tmp_path)
    assert verdict == "compiled", log
    assert "failed to load: they are removed" in log
    assert all(library.stat().st_size > 0 for library in folder.rglob("*.so"))


def test_a_process_killed_while_it_compiles_leaves_nothing_a_later_one_trusts(
    tmp_path: Path,
) -> None:
    folder = kernel_folder(tmp_path)
    killed = _probe(tmp_path)
    deadline = time.monotonic() + 300
    # killed once its first kernel is written, while the next ones compile
    while not any(folder.rglob("*.so")) and time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            killed.wait(timeout=0.05)
        assert killed.returncode is None, "the probe ended before it was killed"
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert not (folder / COMPLETE).exists()
    verdict, log = _verdict(tmp_path)
    assert verdict == "compiled", log
    assert "were left by a compile that never finished: they are removed" in log
    assert (folder / COMPLETE).is_file()
