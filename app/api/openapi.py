"""The OpenAPI document's parts that FastAPI cannot derive from the routes: this install's
limits, and which routes need a key (checked by `app.api.access.KeyCheck`, ahead of the routes)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPBearer

from app.api.access import is_public
from app.settings import Settings

_SCHEMES = (
    HTTPBearer(description="`Authorization: Bearer <key>`"),
    APIKeyHeader(name="X-API-Key"),
)


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
    """`components.securitySchemes`, and `security` on each operation of a path with a key."""
    document["components"]["securitySchemes"] = {
        scheme.scheme_name: scheme.model.model_dump(mode="json", by_alias=True, exclude_none=True)
        for scheme in _SCHEMES
    }
    for route in app.routes:
        if isinstance(route, APIRoute) and route.include_in_schema and not is_public(route.path):
            for method in route.methods or ():
                document["paths"][route.path_format][method.lower()]["security"] = [
                    {scheme.scheme_name: []} for scheme in _SCHEMES
                ]
