"""The audit trail: one JSON line for every admin action (a switch asked, refused, done or
failed; a shadow set or cleared; the start; an attempt a key check refused), in a file of its
own (AUDIT_LOG), apart from the benchmark log that requests can fill, naming each key by its
pseudonym.

It fails closed: an action is recorded as asked, written and synced, before it is done, and
`asked` raises AuditUnavailable (503) when it cannot be, so no admin action happens
unrecorded. Rows written after an action (its outcome) cannot undo it: one that cannot be
written is logged as an error and counted (`bankllm_audit_write_errors_total`)."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.errors import AuditUnavailable
from app.telemetry.clock import utc_now

OPEN = "open"  # who acts when no admin key is configured (local development)
logger = logging.getLogger(__name__)


class Audit:
    def __init__(
        self,
        path: Path,
        on_error: Callable[[], None] = lambda: None,
        stamp: dict[str, Any] | None = None,  # on every row: a Ray replica's id
    ):
        self.path = path
        self._on_error = on_error
        self._stamp = stamp or {}
        self._lock = threading.Lock()  # one line at a time, from any thread
        self._fd: int | None = None

    def asked(
        self, action: str, by: str, previous: str | None, to: str | None, **details: Any
    ) -> None:
        """Record an action about to be done; raises AuditUnavailable if it cannot be."""
        try:
            self._append(action, by, "asked", previous, to, details)
        except OSError as exc:
            self._failed(exc)
            raise AuditUnavailable(
                f"the audit trail cannot be written ({exc.strerror or exc}); admin actions "
                "are refused until it can"
            ) from exc

    def write(
        self,
        action: str,
        by: str,
        result: str,
        previous: str | None = None,
        to: str | None = None,
        **details: Any,
    ) -> None:
        """Record what happened; a row that cannot be written is logged and counted."""
        try:
            self._append(action, by, result, previous, to, details)
        except OSError as exc:
            self._failed(exc)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _append(
        self,
        action: str,
        by: str,
        result: str,
        previous: str | None,
        to: str | None,
        details: dict[str, Any],
    ) -> None:
        row = {"ts": utc_now(), "type": "admin", "action": action, "by": by, "result": result}
        line = json.dumps(row | {"from": previous, "to": to, **details, **self._stamp}) + "\n"
        with self._lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
                self._fd = os.open(self.path, flags, 0o600)
            try:
                os.write(self._fd, line.encode())  # O_APPEND: replicas may share the file
                os.fsync(self._fd)
            except OSError:
                os.close(self._fd)  # reopened by the next row: the file may come back
                self._fd = None
                raise

    def _failed(self, exc: OSError) -> None:
        self._on_error()
        logger.error("the audit trail %s could not be written: %s", self.path, exc)
