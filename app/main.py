"""The FastAPI app: `create_app(settings)` wires the pipeline, routes, errors and limits."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.errors import ServiceError
from app.middleware import BodySizeLimit
from app.pipeline import Pipeline
from app.routes import benchmarks, generate, health, metrics, models
from app.settings import Settings

logger = logging.getLogger(__name__)
_HTTP_TYPES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def _envelope(
    status: int,
    type_: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"type": type_, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {k: v for k, v in e.items() if k in ("type", "loc", "msg", "input")} for e in exc.errors()
    ]
    message = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in errors
    )
    if request.url.path == "/generate":
        pipeline: Pipeline = request.app.state.pipeline
        active = pipeline.active
        pipeline.metrics.requests.labels(
            active.name if active else "none", active.backend if active else "none", "bad_request"
        ).inc()
    return _envelope(422, "invalid_request", message, jsonable_encoder(errors))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return _envelope(
        exc.status_code,
        _HTTP_TYPES.get(exc.status_code, "http_error"),
        str(exc.detail),
        headers=dict(exc.headers or {}),
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return _envelope(500, "internal_error", "internal error")


def create_app(settings: Settings, pipeline: Pipeline | None = None) -> FastAPI:
    """The service for these settings; pass a pipeline to share one built elsewhere."""
    logging.getLogger("app").setLevel(settings.log_level.upper())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.api_keys:
            logger.warning("API_KEYS is empty: every route is open to anyone who can reach it")
        served = pipeline or Pipeline(settings)
        await served.start()
        app.state.pipeline = served
        # Everything alive now (torch, the model, FastAPI) lives as long as the process: keep
        # it out of the collector's full passes, which otherwise stall requests for ~100 ms.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await served.close()

    app = FastAPI(
        title="bankllm",
        version="0.1.0",
        lifespan=lifespan,
        summary="Inference service for a bank's assistant",
    )
    for router in (
        generate.router,
        models.router,
        health.router,
        metrics.router,
        benchmarks.router,
    ):
        app.include_router(router)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
