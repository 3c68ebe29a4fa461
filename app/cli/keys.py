"""The keys a command that calls a running service sends. They come from the environment,
an env file or secret files, never from flags: a flag shows in `ps` to every local user."""

from __future__ import annotations

import os

from app.settings import Settings


def admin_key(settings: Settings) -> str | None:
    return settings.admin_api_key.get_secret_value() if settings.admin_api_key else None


def user_key(settings: Settings) -> str | None:
    """BANKLLM_API_KEY, else the first of API_KEYS."""
    first = settings.api_keys[0].get_secret_value() if settings.api_keys else None
    return os.environ.get("BANKLLM_API_KEY") or first


def evaluation_key(settings: Settings) -> str | None:
    """BANKLLM_API_KEY, else the first of EVAL_API_KEYS, else the admin key: an evaluation's
    labels count only from one of those."""
    first = settings.eval_api_keys[0].get_secret_value() if settings.eval_api_keys else None
    return os.environ.get("BANKLLM_API_KEY") or first or admin_key(settings)
