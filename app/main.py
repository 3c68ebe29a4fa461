"""The FastAPI app: `create_app(settings)` wires the pipeline, routes, errors and limits."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from app.banking.intents import IntentSet
from app.middleware import BodyLimits
from app.pipeline import Pipeline
from app.routes import benchmarks, generate, health, metrics, models, openai, shadow
from app.routes.errors import add_error_handlers
from app.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings, pipeline: Pipeline | None = None) -> FastAPI:
    """The service for these settings; pass a pipeline to share one built elsewhere."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.api_keys:
            logger.warning("API_KEYS is empty: every route is open to anyone who can reach it")
        served = pipeline or Pipeline(settings, IntentSet.load())
        await served.start()
        app.state.pipeline = served
        try:
            yield
        finally:
            await served.close()

    app = FastAPI(
        title="bankllm",
        version="0.1.0",
        lifespan=lifespan,
        summary="Inference service for a bank's assistant",
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    for router in (
        generate.router,
        openai.router,
        models.router,
        health.router,
        metrics.router,
        benchmarks.router,
        shadow.router,
    ):
        app.include_router(router)
    # Requests to these routes are recorded (a metric sample and a log row) even when they are
    # refused before the pipeline: a missing key, a body too large or malformed.
    add_error_handlers(app, {generate.PATH: "generate", **openai.APIS})
    app.add_middleware(
        BodyLimits, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s
    )
    _document_limits(app, settings)
    return app


def _document_limits(app: FastAPI, settings: Settings) -> None:
    """Put this install's MAX_PROMPT_CHARS and MAX_TOKENS_LIMIT in the OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schemas = build()["components"]["schemas"]
            for model, field, key, value in (
                ("GenerateRequest", "prompt", "maxLength", settings.max_prompt_chars),
                ("GenerateRequest", "max_tokens", "maximum", settings.max_tokens_limit),
                ("CompletionRequest", "prompt", "maxLength", settings.max_prompt_chars),
                ("CompletionRequest", "max_tokens", "maximum", settings.max_tokens_limit),
                (
                    "ChatCompletionRequest",
                    "max_completion_tokens",
                    "maximum",
                    settings.max_tokens_limit,
                ),
                ("ChatCompletionRequest", "max_tokens", "maximum", settings.max_tokens_limit),
            ):
                schemas[model]["properties"][field][key] = value
            schemas["CompletionRequest"]["properties"]["prompt"]["items"]["maxLength"] = (
                settings.max_prompt_chars
            )
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
