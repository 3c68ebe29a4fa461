"""A real Prometheus on 127.0.0.1 for the tests that check what it scrapes (Debian's binary;
the test skips, saying why, without it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml


@contextmanager
def prometheus_at(config: dict[str, Any], folder: Path) -> Iterator[str]:
    """Prometheus running `config` (scraping every second), its data in `folder`; its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("no prometheus (Debian: apt-get install prometheus)")
    config = {**config, "global": {"scrape_interval": "1s", "evaluation_interval": "1s"}}
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
