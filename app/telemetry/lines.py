"""What a benchmark-log row becomes for the writer: its line of JSON, and what the log keeps of
it once written."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import pydantic_core

from app.telemetry.summary import Sample


class Line(NamedTuple):
    text: bytes
    sample: Sample | None  # a request row's figures, for the summaries
    shadow: dict[str, Any] | None  # a shadow row, for GET /shadow and gated switches

    @classmethod
    def of(cls, row: dict[str, Any]) -> Line:
        """Raises when the row is not JSON (NaN, say), or a request row lacks its figures."""
        kind = row.get("type")
        return cls(
            encode(row),
            Sample.from_row(row) if kind == "request" else None,
            row if kind == "shadow" else None,
        )


def encode(row: dict[str, Any]) -> bytes:
    """One line of JSON. pydantic-core writes it 4x faster than `json`; a line where it may
    have written NaN or Infinity (which JSON has not) is written by `json` instead, which
    refuses such a number and keeps such a word within a string."""
    line = pydantic_core.to_json(row, inf_nan_mode="constants")
    if b"NaN" in line or b"Infinity" in line:
        line = json.dumps(row, separators=(",", ":"), allow_nan=False).encode()
    return line + b"\n"
