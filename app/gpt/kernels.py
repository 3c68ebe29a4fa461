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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import torch

logger = logging.getLogger(__name__)
T = TypeVar("T")
COMPLETE = "complete"


def cache_root() -> Path:
    """`$BANKLLM_CACHE_DIR`, else `$XDG_CACHE_HOME/bankllm`, else `~/.cache/bankllm`."""
    if folder := os.environ.get("BANKLLM_CACHE_DIR"):
        return Path(folder)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bankllm"


def kernel_folder(root: Path | None = None) -> Path:
    """One folder per torch release: kernels of another release are never read."""
    return (root or cache_root()) / f"inductor-{torch.__version__}"


@contextmanager
def _held(folder: Path) -> Iterator[None]:
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # until this compile ends, or its process does
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _empty(folder: Path, why: str) -> None:
    logger.warning("the compiled kernels in %s %s: they are removed", folder, why)
    shutil.rmtree(folder, ignore_errors=True)


def compile_in(folder: Path, compile_step: Callable[[], T]) -> T:
    """Run `compile_step` (which compiles and checks) with its kernels kept in `folder`, and
    mark the folder whole once it succeeds. Kernels left half-written, or that fail, are
    removed and compiled once more; a second failure is raised."""
    with _held(folder):
        whole = (folder / COMPLETE).is_file()
        if folder.exists() and not whole:
            _empty(folder, "were left by a compile that never finished")
        # torch reads the folder from its environment each time it opens the cache
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
        logger.info("compiling the decoding step, its kernels kept in %s", folder)
        try:
            result = compile_step()
        except Exception:
            if not whole:
                raise
            logger.exception("compiling from the kept kernels failed")
            _empty(folder, "failed to load")
            result = compile_step()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / COMPLETE).touch()
        return result
