"""Domain exceptions. Each knows its HTTP status and its one envelope; `app.api.errors`
maps every exception to HTTP in one handler."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

# The `status` label of bankllm_requests_total and of the benchmark log's rows.
# `refused`: a cloud model's own safety stop: a judgement of the prompt, not a model's failure
RequestStatus = Literal[
    "ok", "bad_request", "rejected", "refused", "upstream_error", "timeout", "cancelled"
]


class ServiceError(Exception):
    status_code: ClassVar[int] = 500
    type: ClassVar[str] = "internal_error"
    outcome: ClassVar[RequestStatus] = "upstream_error"

    def __init__(self, message: str, details: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The error envelope: the one body of every error, plain, streamed or in the log."""
        return {"error": {"type": self.type, "message": self.message, "details": self.details}}


class InternalError(ServiceError):
    """A bug: logged with its traceback; the caller learns nothing more."""

    def __init__(self) -> None:
        super().__init__("internal error")


class Unauthorized(ServiceError):
    status_code, type, outcome = 401, "unauthorized", "rejected"


class Forbidden(ServiceError):
    status_code, type, outcome = 403, "forbidden", "rejected"


class BadRequest(ServiceError):
    status_code, type, outcome = 400, "bad_request", "bad_request"


class UnsupportedMediaType(ServiceError):
    status_code, type, outcome = 415, "unsupported_media_type", "bad_request"


class NotFound(ServiceError):
    status_code, type, outcome = 404, "not_found", "bad_request"


class MethodNotAllowed(ServiceError):
    status_code, type, outcome = 405, "method_not_allowed", "bad_request"


class ModelNotFound(ServiceError):
    status_code, type, outcome = 404, "model_not_found", "bad_request"


class ModelNotActive(ServiceError):
    """A registered model that is not the one serving: one model is active at a time."""

    status_code, type, outcome = 409, "model_not_active", "bad_request"

    def __init__(self, message: str, details: Any = None):
        # OpenAI's SDK retries a 409 unless told: retrying cannot change the active model
        super().__init__(message, details, {"x-should-retry": "false"})


class SwitchInProgress(ServiceError):
    status_code, type, outcome = 409, "switch_in_progress", "rejected"


class SwitchIncomplete(ServiceError):
    """A switch of the whole fleet that some replicas could not make: those keep their model.
    Its details name each replica's state and the model the fleet is set to."""

    status_code, type, outcome = 503, "switch_incomplete", "upstream_error"


class SwitchRefused(ServiceError):
    """A gated switch whose candidate failed a condition: nothing was loaded into the live slot.
    Its details list every condition with its figure and verdict."""

    status_code, type, outcome = 412, "switch_refused", "rejected"

    def __init__(self, model: str, conditions: list[dict[str, Any]]):
        failed = ", ".join(c["condition"] for c in conditions if not c["passed"])
        message = f"{model!r} does not meet the switch's conditions: {failed} failed"
        super().__init__(message, {"model": model, "conditions": conditions})


class ShadowIsActive(ServiceError):
    status_code, type, outcome = 409, "shadow_is_active", "bad_request"


class OneModelOnly(ServiceError):
    """A shadow or an evaluation would load a second model where SWITCH_MODE=drain_first says
    the device holds one."""

    status_code, type, outcome = 409, "one_model_only", "bad_request"

    def __init__(self, what: str):
        message = f"{what} loads a second model, and SWITCH_MODE=drain_first holds one at a time"
        super().__init__(message, {"switch_mode": "drain_first"})


Problem = tuple[list[str | int], str, Any]  # (where in the body, what is wrong, the value)


def json_safe(value: Any) -> Any:
    """A value echoed in an error, as JSON can carry it: Python's parser takes NaN and
    Infinity, which JSON has no numbers for, so they come back as the strings "nan", "inf";
    and a lone surrogate (`"\\ud800"`), which UTF-8 cannot encode, comes back as U+FFFD."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value if value.isascii() else unicode_text(value)
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def unicode_text(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD (JSON's `\\ud800` escape makes one)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def lone_surrogate(text: str) -> int | None:
    """Where `text` holds a lone surrogate, which no UTF-8 text can: None when it is text."""
    if text.isascii():
        return None
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        return exc.start
    return None


class InvalidRequest(ServiceError):
    """A 422. Its details have one shape wherever it comes from, the schema's: a list of
    `{"type", "loc", "msg", "input"}`."""

    status_code, type, outcome = 422, "invalid_request", "bad_request"

    @classmethod
    def fields(cls, *problems: Problem, kind: str = "value_error") -> InvalidRequest:
        """The error naming each field at fault: `(["max_tokens"], "must be ...", 513)`."""
        message = "; ".join(
            f"{'.'.join(str(p) for p in loc) or 'body'}: {msg}" for loc, msg, _ in problems
        )
        details = [
            {"type": kind, "loc": ["body", *loc], "msg": msg, "input": json_safe(value)}
            for loc, msg, value in problems
        ]
        return cls(message, details)


class PayloadTooLarge(ServiceError):
    status_code, type, outcome = 413, "payload_too_large", "bad_request"

    def __init__(self, max_bytes: int):
        super().__init__(f"request body is larger than {max_bytes} bytes", {"max_bytes": max_bytes})


class BodyTimeout(ServiceError):
    """The body did not arrive whole in time: a client that stalled, or a slowloris."""

    status_code, type, outcome = 408, "body_timeout", "bad_request"

    def __init__(self, timeout_s: float):
        message = f"the request body did not arrive within BODY_TIMEOUT_S={timeout_s:g} s"
        super().__init__(message, {"timeout_s": timeout_s}, {"Connection": "close"})


class _RetryAfter(ServiceError):
    """An error that tells the caller when to try again (details and the Retry-After header)."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(
            message, {"retry_after_s": retry_after_s}, {"Retry-After": str(retry_after_s)}
        )


class QueueFull(_RetryAfter):
    status_code, type, outcome = 429, "queue_full", "rejected"


class KeyLimited(ServiceError):
    """A key's own limit (app.serving.quotas): `limit` says which."""

    status_code, type, outcome = 429, "key_limited", "rejected"

    def __init__(self, message: str, limit: str, retry_after_s: int):
        details = {"limit": limit, "retry_after_s": retry_after_s}
        super().__init__(message, details, {"Retry-After": str(retry_after_s)})


class UpstreamError(ServiceError):
    """A remote model failed. Every subclass is a failure a FALLBACK_MODEL may answer for."""

    status_code, type = 502, "upstream_error"
    outcome: ClassVar[RequestStatus] = "upstream_error"


class UpstreamRefused(UpstreamError):
    """The upstream answered, but not with a reply (a 4xx for this request, a safety stop): it
    is up, so its circuit breaker does not count this against it."""


class UpstreamSafetyStop(UpstreamRefused):
    """The upstream's safety filter blocked the prompt or stopped the reply. Its own status,
    `refused`: neither the error rate a switch is gated on nor a shadow's failures count it."""

    type = "upstream_safety"
    outcome: ClassVar[RequestStatus] = "refused"


class UpstreamAuthRejected(UpstreamError):
    type = "upstream_auth_rejected"


class UpstreamRateLimited(_RetryAfter, UpstreamError):
    status_code, type = 429, "upstream_rate_limited"


class UpstreamTimeout(UpstreamError):
    status_code, type = 504, "upstream_timeout"
    outcome: ClassVar[RequestStatus] = "timeout"


class ModelFailed(UpstreamError):
    """The active model broke while serving (its engine died) and is being restarted; a
    FALLBACK_MODEL answers for it meanwhile."""

    status_code, type = 503, "model_failed"


class CircuitOpen(_RetryAfter, UpstreamError):
    status_code, type = 503, "circuit_open"


class ModelUnavailable(ServiceError):
    status_code, type, outcome = 503, "model_unavailable", "rejected"


class ModelDegraded(ModelUnavailable):
    type = "degraded"


class AuditUnavailable(ServiceError):
    """An admin action refused: the audit trail cannot record it."""

    status_code, type, outcome = 503, "audit_unavailable", "rejected"


class Draining(ServiceError):
    """The service is stopping: it finishes what it has and takes nothing new."""

    status_code, type, outcome = 503, "draining", "rejected"

    def __init__(self, **details: Any) -> None:
        # ask the caller to go elsewhere, and this connection to close after the answer
        headers = {"Retry-After": "1", "Connection": "close"}
        message = "the service is stopping; send the request to another replica"
        super().__init__(message, {"retry_after_s": 1, **details}, headers)


class ShutDown(ServiceError):
    """A request still running when the stop's grace period ran out."""

    status_code, type, outcome = 503, "shut_down", "cancelled"

    def __init__(self, grace_s: float) -> None:
        message = f"the service stopped before the answer ended (SHUTDOWN_GRACE_S={grace_s:g})"
        super().__init__(message, None, {"Connection": "close"})


class GenerationTimeout(ServiceError):
    status_code, type, outcome = 504, "timeout", "timeout"


class ClientDisconnected(ServiceError):
    # 499 is nginx's "client closed request": nobody reads it, but logs and metrics do
    status_code, type, outcome = 499, "cancelled", "cancelled"
