"""POST /generate: one completion, whole or streamed as server-sent events."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request

from app.api._disconnect import cancel_on_disconnect
from app.api._utils import EventStreamResponse, FastJSONResponse, sse
from app.api.deps import CallerDep, PipelineDep
from app.api.schemas import EVENT_STREAM, GeneratePublic, GenerateRequest, error_responses
from app.errors import InternalError, ServiceError
from app.serving.pipeline import Origin, StreamEvent

logger = logging.getLogger(__name__)
router = APIRouter(tags=["generate"])
PATH = "/generate"
# GenerateRequest's fields that are sampling options, passed on as they are (a test holds them
# to be every field but the prompt, `stream` and `label`, so a new one is not silently dropped)
OPTIONS = ("max_tokens", "temperature", "top_p", "stop", "seed")
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": EVENT_STREAM, "description": "The result; with `stream: true`, SSE."},
    **error_responses(400, 401, 403, 408, 413, 415, 422, 429, 502, 503, 504),
}


@router.post(PATH, response_model=GeneratePublic, responses=_RESPONSES)
async def generate(
    body: GenerateRequest, request: Request, pipeline: PipelineDep, caller: CallerDep
) -> FastJSONResponse | EventStreamResponse:
    """One completion from the active model; with `stream: true`, SSE deltas then the result."""
    # the sampling options by name: `model_dump` with an exclude cost a microsecond a request
    options: dict[str, Any] = {name: getattr(body, name) for name in OPTIONS}
    origin = Origin(label=body.label, may_label=caller.may_label, key=caller.key_id)
    if not body.stream:
        answer = pipeline.generate(body.prompt, origin=origin, **options)
        result = await cancel_on_disconnect(request, answer)
        # The result's fields are GeneratePublic's (a test holds them equal), rendered as
        # they are rather than built into the model and validated again.
        return FastJSONResponse(result.fields())
    events = pipeline.stream(body.prompt, origin=origin, **options)
    try:
        # Errors before the first event (queue full, timeout, no model) keep their HTTP status.
        first = await cancel_on_disconnect(request, anext(events))
    except BaseException:
        await events.aclose()
        raise
    return EventStreamResponse(_encode(first, events), events)


async def _encode(
    first: StreamEvent, events: AsyncGenerator[StreamEvent, None]
) -> AsyncIterator[str]:
    async with aclosing(events):
        event: StreamEvent | None = first
        try:
            while event is not None:
                if event.result is not None:
                    yield sse({k: v for k, v in event.result.fields().items() if k != "text"})
                else:
                    yield sse({"id": event.id, "delta": event.delta})
                event = await anext(events, None)
        except ServiceError as exc:  # after the first byte, an error travels as an event
            yield sse(exc.body())
        except Exception:
            logger.exception("stream failed")
            yield sse(InternalError().body())
        yield sse("[DONE]")
