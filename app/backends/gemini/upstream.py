"""What a cloud SDK's exceptions mean to our callers: one UpstreamError subclass each, and the
retry delay a server asked for."""

from __future__ import annotations

import math
import re
from typing import Any

import tenacity

from app.errors import (
    UpstreamAuthRejected,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRefused,
    UpstreamTimeout,
)

RETRY_STATUS_CODES = (408, 429, 500, 502, 503, 504)
_AUTH_REASONS = {"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def error_body(details: Any) -> dict[str, Any]:
    """The `error` object of a Google error response (the SDK keeps the whole JSON)."""
    if isinstance(details, list) and len(details) == 1:
        details = details[0]
    body = details.get("error") if isinstance(details, dict) else None
    return body if isinstance(body, dict) else {}


def server_delay_s(details: Any, headers: Any) -> float | None:
    """The wait the server asked for: google.rpc.RetryInfo's retryDelay, else Retry-After."""
    for item in error_body(details).get("details") or []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("RetryInfo"):
            match = _DURATION.match(str(item.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    value = headers.get("retry-after") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from Google; the backoff decides instead


def is_auth_rejection(code: int, details: Any) -> bool:
    if code in (401, 403):
        return True
    reasons = {
        item.get("reason")
        for item in error_body(details).get("details") or []
        if isinstance(item, dict)
    }
    return code == 400 and bool(reasons & _AUTH_REASONS)


def from_status(name: str, code: int, details: Any, headers: Any, attempts: int) -> UpstreamError:
    """The error for a final (non-retried or retried-out) upstream HTTP status."""
    body = error_body(details)
    said = f"{code} {body.get('status') or ''}".strip()
    message = str(body.get("message") or "")[:300]
    public = {"upstream_status": code, "upstream_message": message, "attempts": attempts}
    if is_auth_rejection(code, details):
        return UpstreamAuthRejected(f"{name} rejected the API key ({said}): {message}", public)
    if code == 429:
        delay = server_delay_s(details, headers)
        retry_after = max(1, math.ceil(delay)) if delay is not None else 1
        error = UpstreamRateLimited(
            f"{name} is rate limiting us ({said}) after {attempts} attempt(s)", retry_after
        )
        error.details = {**public, "retry_after_s": retry_after}
        return error
    if code in (408, 504):
        return UpstreamTimeout(f"{name} timed out ({said}) after {attempts} attempt(s)", public)
    if code >= 500:
        return UpstreamError(f"{name} failed ({said}) after {attempts} attempt(s)", public)
    return UpstreamRefused(f"{name} refused the request ({said}): {message}", public)


def malformed(name: str, exc: BaseException) -> UpstreamError:
    text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return UpstreamError(f"{name} sent a malformed response: {text}")


class ServerDelay(tenacity.wait.wait_base):
    """Wait what the server asked for, else the exponential backoff with jitter."""

    def __init__(self, backoff: tenacity.wait.wait_base):
        self._backoff = backoff

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        delay = server_delay_s(getattr(exc, "details", None), headers_of(exc))
        return delay if delay is not None else self._backoff(retry_state)


def headers_of(exc: BaseException | None) -> Any:
    """The HTTP headers of the response an SDK error carries, if any."""
    response = getattr(exc, "response", None)
    return getattr(response, "headers", None)
