"""What a request that did not finish becomes: its record failed (or cancelled) once, and the
error its caller gets."""

from __future__ import annotations

import asyncio
import logging

from app.errors import InternalError, ServiceError
from app.serving.deadline import Deadline
from app.telemetry.record import RequestRecord

logger = logging.getLogger(__name__)


def recorded_failure(
    exc: BaseException, record: RequestRecord, deadline: Deadline
) -> BaseException:
    """What a request that did not finish becomes, recorded: `exc` itself, or the service
    error to raise in its place."""
    if isinstance(exc, TimeoutError):
        if not deadline.passed:  # an adapter's own timeout, not the request's deadline
            logger.exception("generation %s timed out inside its model", record.request_id)
            record.fail(bug := InternalError())
            return bug
        record.fail(error := deadline.error())
        return error
    if isinstance(exc, ServiceError):
        record.fail(exc)
    elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
        if deadline.expired:
            record.fail(deadline.error())
        else:
            record.cancel()  # the caller left (a whole answer stays as it was)
    elif isinstance(exc, Exception):  # a bug, or a fault in our own parts: logged once
        logger.exception("generation %s failed", record.request_id)
        record.fail(bug := InternalError())
        return bug
    return exc
