"""Our domain errors in OpenAI's envelope: `{"error": {"message", "type", "param", "code"}}`,
400 for an invalid request (not 422), the status otherwise as `/generate` answers it."""

from __future__ import annotations

from typing import Any

from app.errors import ModelNotActive, ModelNotFound, ServiceError

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"}
_TYPES |= {404: "not_found_error", 409: "invalid_request_error", 413: "invalid_request_error"}
_TYPES |= {429: "rate_limit_error"}


def openai_status(error: ServiceError) -> int:
    return 400 if error.status_code == 422 else error.status_code


def openai_body(error: ServiceError) -> dict[str, Any]:
    status = openai_status(error)
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"message": error.message, "type": kind, "param": _param(error), "code": error.type}
    return {"error": body}


def _param(error: ServiceError) -> str | None:
    """The field at fault: the model, or the first field a validation error names."""
    if isinstance(error, ModelNotFound | ModelNotActive):
        return "model"
    details = error.details
    if isinstance(details, list) and details and isinstance(details[0], dict):
        loc = [str(p) for p in details[0].get("loc", []) if p != "body"]
        return ".".join(loc) or None
    return None
