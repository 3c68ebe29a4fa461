"""The FastAPI app: `create_app(settings)` wires the service, routes, errors and limits."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext

from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.api.access import KeyCheck
from app.api.errors import add_error_handlers
from app.api.middleware import BodyLimits
from app.api.openai import routes as openai
from app.api.openapi import document
from app.api.routes import benchmarks, generate, health, metrics, models, shadow
from app.banking.intents import IntentSet
from app.service import Service
from app.settings import Settings

logger = logging.getLogger(__name__)
NO_KEYS = (
    "API_KEYS is empty: a service with no keys answers anyone. Set API_KEYS (and ADMIN_API_KEY "
    "to switch models), or DEV_MODE=true to serve a development copy open to anyone"
)


Alongside = Callable[[], AbstractAsyncContextManager[object]]


def create_app(
    settings: Settings, service: Service | None = None, alongside: Alongside | None = None
) -> FastAPI:
    """The app for these settings; pass a service to share one built elsewhere, and what
    runs alongside it while it serves (a Ray replica's part in its fleet: entered once the
    service has started, left before it closes). With no user key it serves only in
    development (DEV_MODE=true), open to anyone who reaches it."""
    if not (settings.api_keys or settings.eval_api_keys):
        if not settings.dev_mode:
            raise ValueError(NO_KEYS)
        logger.warning(
            "DEV_MODE with no API_KEYS: every user route is open to anyone who can reach it%s; "
            "never serve customers so",
            "" if settings.admin_api_key else ", and /switch and /shadow too",
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        served = service or Service(settings, IntentSet.load())
        await served.start()
        app.state.service = served
        try:
            async with (alongside or nullcontext)():
                yield
        finally:
            await served.close()
            logger.info("stopped: every model closed, the benchmark log written and closed")

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
    # A request is matched against the routes in order, and FastAPI puts its documentation's
    # first: the API's go ahead of them (a stable sort), so /generate is tried first, not fifth.
    # (A mount or a catch-all route added later would need its own place: a test holds the order.)
    app.router.routes.sort(key=lambda route: not isinstance(route, APIRoute))
    # Requests to these routes are recorded (a metric sample and a log row) even when they are
    # refused before the pipeline: a missing key, a body too large or malformed.
    handle_error = add_error_handlers(app, {generate.PATH: "generate", **openai.APIS})
    app.add_middleware(
        BodyLimits, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s
    )
    # Added last, so it is the outermost: no route, no body limit, reads a request before it.
    app.add_middleware(KeyCheck, settings=settings, refuse=handle_error)
    document(app, settings)
    return app
