"""POST /generate: one completion, whole or streamed as server-sent events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.api._disconnect import cancel_on_disconnect
from app.api.deps import CallerDep, PipelineDep
from app.api.schemas import EVENT_STREAM, GeneratePublic, GenerateRequest, error_responses
from app.api.sse import EventStreamResponse, event_stream
from app.errors import ServiceError
from app.serving.pipeline import RequestContext, StreamEvent

router = APIRouter(tags=["generate"])
PATH = "/generate"
# GenerateRequest's fields that are sampling options, passed on as they are (a test holds them
# to be every field but the prompt, `earlier`, `stream`, `label` and `user`, so a new one is
# not silently dropped)
OPTIONS = ("max_tokens", "temperature", "top_p", "stop", "seed")
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": EVENT_STREAM, "description": "The result; with `stream: true`, SSE."},
    **error_responses(400, 401, 403, 408, 413, 415, 422, 429, 502, 503, 504),
}


@router.post(PATH, response_model=GeneratePublic, responses=_RESPONSES)
async def generate(
    body: GenerateRequest, request: Request, pipeline: PipelineDep, caller: CallerDep
) -> JSONResponse | EventStreamResponse:
    """One completion from the active model; with `stream: true`, SSE deltas then the result."""
    options: dict[str, Any] = {name: getattr(body, name) for name in OPTIONS}
    origin = RequestContext(
        user=body.user, label=body.label, may_label=caller.may_label, key=caller.key_id
    )
    if not body.stream:
        answer = pipeline.generate(body.prompt, earlier=body.earlier, origin=origin, **options)
        result = await cancel_on_disconnect(request, answer)
        # The result's fields are GeneratePublic's (a test holds them equal).
        return JSONResponse(result.fields())
    events = pipeline.stream(body.prompt, earlier=body.earlier, origin=origin, **options)
    return await event_stream(request, events, _payloads, ServiceError.body)


def _payloads(event: StreamEvent) -> list[dict[str, Any]]:
    """A delta, or the result without its text (the deltas carried it)."""
    if event.result is not None:
        return [{k: v for k, v in event.result.fields().items() if k != "text"}]
    return [{"id": event.id, "delta": event.delta}]
