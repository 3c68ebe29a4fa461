"""Where the compiled decoding step's kernels are kept: a folder of the service's own, not the
temporary folder every process of a user shares, held by one compiling process at a time.

A process killed while it compiles can leave a half-written kernel behind, which a later start
would load and fail on. So the folder counts as whole only once a compile in it has finished
and been checked (a `complete` mark); one found without the mark is emptied before use, and
one whose kernels fail is emptied and compiled into afresh. The lock is an `flock`: the kernel
lets it go when its holder dies, however it dies.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import torch

logger = logging.getLogger(__name__)
T = TypeVar("T")
COMPLETE = "complete"
LOCK_POLL_S = 0.1  # how often a wait for another process's compile looks at its stop


def cache_root() -> Path:
    """`$BANKLLM_CACHE_DIR`, else `$XDG_CACHE_HOME/bankllm`, else `~/.cache/bankllm`."""
    if folder := os.environ.get("BANKLLM_CACHE_DIR"):
        return Path(folder)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bankllm"


def kernel_folder(root: Path | None = None) -> Path:
    """One folder per torch release: kernels of another release are never read."""
    return (root or cache_root()) / f"inductor-{torch.__version__}"


def use(folder: Path) -> None:
    """Point torch's compiler at `folder` (it reads it from the environment each time it opens
    its cache). Called from the thread that makes the step, not the compiling one: the
    environment is no place to write while other threads may read it."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)


@contextmanager
def _held(folder: Path, stop: threading.Event) -> Iterator[bool]:
    """The folder's lock, or False once `stop` is set while another process holds it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "a") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if stop.wait(LOCK_POLL_S):
                    yield False
                    return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _empty(folder: Path, why: str) -> None:
    logger.warning("the compiled kernels in %s %s: they are removed", folder, why)
    shutil.rmtree(folder, ignore_errors=True)


def compile_in(
    folder: Path, compile_step: Callable[[], T | None], stop: threading.Event
) -> T | None:
    """Run `compile_step` (which compiles and checks; None when stopped part way) with its
    kernels kept in `folder` (see `use`), and mark the folder whole once it succeeds. Kernels
    left half-written, or that fail, are removed and compiled once more; a second failure is
    raised. None, without compiling, when `stop` is set while another process compiles."""
    with _held(folder, stop) as held:
        if not held:
            return None
        whole = (folder / COMPLETE).is_file()
        if folder.exists() and not whole:
            _empty(folder, "were left by a compile that never finished")
        (folder / COMPLETE).unlink(missing_ok=True)  # whole again only once this one is
        logger.info("compiling the decoding step, its kernels kept in %s", folder)
        try:
            result = compile_step()
        except Exception:
            if not whole:
                raise
            logger.exception("compiling from the kept kernels failed")
            _empty(folder, "failed to load")
            result = compile_step()
        if result is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / COMPLETE).touch()
        return result
