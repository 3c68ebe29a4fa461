"""A walk of every route with no key, a wrong key, a user key and the admin key: what each
answered. The same walk runs in process (`tests/api/test_access.py`) and against a `bankllm serve`
installed as `make run` installs it (`tests/test_install.py`)."""

from __future__ import annotations

import re
from collections.abc import Iterable

import httpx

from app.api.access import ADMIN_PATHS, is_public

Where = tuple[str, str]  # method, path
CALLERS = ("none", "wrong", "user", "admin")
# A body each route accepts, so a key that passes meets a 2xx (a route without one gets `{}`,
# and then only "not refused for its key" is asked of it).
BODIES: dict[Where, object] = {
    ("POST", "/generate"): {"prompt": "my card has not arrived", "max_tokens": 4},
    ("POST", "/v1/chat/completions"): {
        "model": "custom",
        "messages": [{"role": "user", "content": "where is my card"}],
        "max_tokens": 4,
    },
    ("POST", "/v1/completions"): {"model": "custom", "prompt": "where is my card", "max_tokens": 4},
    ("POST", "/switch"): {"model": "custom"},
    ("POST", "/shadow"): {"model": "custom-b", "sample": 0.0},
}


def concrete(path: str) -> str:
    """A path template with each parameter filled by a registered model's name."""
    return re.sub(r"\{[^}]+\}", "custom", path)


async def walk(
    client: httpx.AsyncClient, routes: Iterable[Where], keys: dict[str, str | None]
) -> dict[Where, dict[str, int]]:
    """Each route's status for each caller (`keys`: caller -> key, None for no key)."""
    answers: dict[Where, dict[str, int]] = {}
    for method, path in sorted(set(routes)):
        for caller in CALLERS:
            key = keys[caller]
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            body = BODIES.get((method, path), {}) if method in ("POST", "PUT", "PATCH") else None
            answer = await client.request(method, concrete(path), json=body, headers=headers)
            answers.setdefault((method, path), {})[caller] = answer.status_code
    return answers


def faults(answers: dict[Where, dict[str, int]]) -> list[str]:
    """Every answer that breaks the rule: public paths answer anyone; admin paths 401, 401,
    403 and pass; every other path 401, 401 and pass."""
    return [
        f"{method} {path} with {caller} key: {status}"
        for (method, path), by in answers.items()
        for caller, status in by.items()
        if not _allowed(method, path, caller, status)
    ]


def _allowed(method: str, path: str, caller: str, status: int) -> bool:
    # a pass is a 2xx where the walk knows a body the route accepts (and for a GET or a
    # DELETE), else anything but a refusal for the key
    strict = method in ("GET", "DELETE", "HEAD") or (method, path) in BODIES
    passed = 200 <= status < 300 if strict else status not in (401, 403)
    if is_public(path):
        return passed
    if caller in ("none", "wrong"):
        return status == 401
    if caller == "user" and path in ADMIN_PATHS:
        return status == 403
    return passed
