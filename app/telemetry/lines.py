"""What a benchmark-log row becomes for the writer: its line of JSON, and what the log keeps of
it once written."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

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
    """One line of JSON; a NaN or an infinity (which JSON has not) raises ValueError."""
    return json.dumps(row, separators=(",", ":"), allow_nan=False).encode() + b"\n"
