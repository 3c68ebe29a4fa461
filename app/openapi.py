"""The OpenAPI document's parts that FastAPI cannot derive from the routes: this install's
limits, and which routes need a key (the key checks declare no security dependencies, which
FastAPI would solve on every request)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from app.deps import API_KEY, BEARER, require_admin_key, require_api_key
from app.settings import Settings

_KEY_CHECKS: tuple[Callable[..., Any], ...] = (require_api_key, require_admin_key)
_SCHEMES = (BEARER, API_KEY)


def document(app: FastAPI, settings: Settings) -> None:
    """Put this install's MAX_PROMPT_CHARS and MAX_TOKENS_LIMIT, and the two ways of presenting
    a key, in the app's OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            _limits(document["components"]["schemas"], settings)
            _security(document, app)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _limits(schemas: dict[str, Any], settings: Settings) -> None:
    for model, field, key, value in (
        ("GenerateRequest", "prompt", "maxLength", settings.max_prompt_chars),
        ("GenerateRequest", "max_tokens", "maximum", settings.max_tokens_limit),
        ("CompletionRequest", "prompt", "maxLength", settings.max_prompt_chars),
        ("CompletionRequest", "max_tokens", "maximum", settings.max_tokens_limit),
        ("ChatCompletionRequest", "max_completion_tokens", "maximum", settings.max_tokens_limit),
        ("ChatCompletionRequest", "max_tokens", "maximum", settings.max_tokens_limit),
    ):
        schemas[model]["properties"][field][key] = value
    schemas["CompletionRequest"]["properties"]["prompt"]["items"]["maxLength"] = (
        settings.max_prompt_chars
    )


def _security(document: dict[str, Any], app: FastAPI) -> None:
    """`components.securitySchemes`, and `security` on each operation whose route checks a key."""
    document["components"]["securitySchemes"] = {
        scheme.scheme_name: scheme.model.model_dump(mode="json", by_alias=True, exclude_none=True)
        for scheme in _SCHEMES
    }
    for route in app.routes:
        if isinstance(route, APIRoute) and route.include_in_schema and _checks_key(route):
            for method in route.methods or ():
                document["paths"][route.path_format][method.lower()]["security"] = [
                    {scheme.scheme_name: []} for scheme in _SCHEMES
                ]


def _checks_key(route: APIRoute) -> bool:
    return any(d.call in _KEY_CHECKS for d in _walk(route.dependant))


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    for dependency in dependant.dependencies:
        yield dependency
        yield from _walk(dependency)
