"""Reading the JSONL benchmark log: a log's files (its replicas' beside it) and their rows."""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def log_files(path: Path) -> list[Path]:
    """A log and its replicas' files beside it (`<stem>.<replica>.jsonl`, on Ray Serve: a
    replica's id is 8 lowercase letters and digits), and no other file of the folder."""
    replica = re.compile(rf"{re.escape(path.stem)}\.[a-z0-9]{{8}}{re.escape(path.suffix)}")
    siblings = sorted(
        p for p in path.parent.glob(f"{glob.escape(path.stem)}.*") if replica.fullmatch(p.name)
    )
    return [p for p in (path, *siblings) if p.is_file()]


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every row of a log and of its replicas' files, in time order."""
    files = log_files(path)
    if len(files) == 1:
        return list(read_rows(files[0]))
    rows = [row for f in files for row in read_rows(f)]
    rows.sort(key=lambda row: str(row.get("ts", "")))  # ISO times: text order is time order
    return rows


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Every whole JSON row of a log; a torn or foreign line is skipped."""
    if not path.is_file():
        return
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                yield row
