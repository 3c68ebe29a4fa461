"""The audit trail: one `admin` row in the benchmark log for every admin action (a switch asked,
refused, done or failed; a shadow set or cleared; the start), naming the key by its pseudonym."""

from __future__ import annotations

from typing import Any

from app.telemetry.benchlog import BenchmarkLog
from app.telemetry.clock import utc_now

OPEN = "open"  # who acts when no admin key is configured (local development)


class Audit:
    def __init__(self, log: BenchmarkLog):
        self._log = log

    def write(
        self,
        action: str,
        by: str,
        result: str,
        previous: str | None = None,
        to: str | None = None,
        **details: Any,
    ) -> None:
        self._log.append(
            {
                "ts": utc_now(),
                "type": "admin",
                "action": action,
                "by": by,
                "result": result,
                "from": previous,
                "to": to,
                **details,
            }
        )
