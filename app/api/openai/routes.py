"""The OpenAI-compatible routes: `/v1/chat/completions`, `/v1/completions`, `/v1/models`. One
path with `/generate`: the same pipeline, admission, auth, PII policy, fallback, metrics and
log rows; only the shapes differ."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.api._disconnect import cancel_on_disconnect
from app.api.deps import CallerDep, PipelineDep, ServiceDep
from app.api.openai.encode import ChunkEncoder, OpenAIEndpoint, completion
from app.api.openai.errors import openai_body
from app.api.openai.protocol import ChatCompletionRequest, CompletionRequest
from app.api.schemas import EVENT_STREAM, OpenAIErrorPublic, error_responses
from app.api.sse import EventStreamResponse, event_stream
from app.errors import InvalidRequest, ModelNotFound
from app.service import Service
from app.serving.pipeline import Pipeline, RequestContext

router = APIRouter(prefix="/v1", tags=["openai"])
APIS: dict[str, str] = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}
# In OpenAI's envelope; 400 (not 422) for a bad body; "4XX" also keeps FastAPI from adding its 422.
_ERRORS = error_responses(
    400, 401, 404, 408, 409, 413, 415, 429, 502, 503, 504, model=OpenAIErrorPublic
) | {"4XX": {"model": OpenAIErrorPublic}}
_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"schema": {"type": "object"}}, **EVENT_STREAM}}
}


@router.post("/chat/completions", response_model=None, responses=_ANSWER | _ERRORS)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, pipeline: PipelineDep, caller: CallerDep
) -> JSONResponse | EventStreamResponse:
    """A chat completion, whole or streamed, in OpenAI's shape."""
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        try:  # the one max_completion_tokens overrides is checked too, and its refusal logged
            pipeline.limits.params(max_tokens=body.max_tokens)
        except InvalidRequest as exc:
            pipeline.refuse(exc, "chat")
            raise
    origin = RequestContext("chat", body.model, body.user, key=caller.key_id)
    arguments = {"messages": body.conversation(), "origin": origin, **body.chat_options()}
    return await _answer(
        "chat", pipeline, request, arguments, body.stream, body.include_usage, body.structured
    )


@router.post("/completions", response_model=None, responses=_ANSWER | _ERRORS)
async def completions(
    body: CompletionRequest, request: Request, pipeline: PipelineDep, caller: CallerDep
) -> JSONResponse | EventStreamResponse:
    """A text completion, whole or streamed, in OpenAI's shape."""
    origin = RequestContext("completions", body.model, body.user, key=caller.key_id)
    arguments = {"prompt": body.text(), "origin": origin, **body.options()}
    return await _answer(
        "completions", pipeline, request, arguments, body.stream, body.include_usage
    )


@router.get("/models", responses=error_responses(401, model=OpenAIErrorPublic))
async def list_models(service: ServiceDep) -> dict[str, Any]:
    """The models this install can serve; `active` marks the one that answers."""
    return {"object": "list", "data": _models(service)}


@router.get(
    "/models/{model}",
    responses=error_responses(401, 404, model=OpenAIErrorPublic)
    | {"4XX": {"model": OpenAIErrorPublic}},
)
async def get_model(model: str, service: ServiceDep) -> dict[str, Any]:
    for entry in _models(service):
        if entry["id"] == model:
            return entry
    raise ModelNotFound(f"no model named '{model}' that this install can serve")


def _models(service: Service) -> list[dict[str, Any]]:
    active = service.active
    return [
        {
            "id": m.name,
            "object": "model",
            "created": service.started_at,
            "owned_by": "bankllm",
            "active": active is not None and m.name == active.name,
            "backend": m.backend,
            "version": m.version,
            "turns": m.turns,
        }
        for m in service.models()
        if m.available
    ]


async def _answer(
    kind: OpenAIEndpoint,
    pipeline: Pipeline,
    request: Request,
    arguments: dict[str, Any],
    stream: bool | None,
    include_usage: bool,
    structured: bool = False,
) -> JSONResponse | EventStreamResponse:
    created = int(time.time())
    if not stream:
        result = await cancel_on_disconnect(request, pipeline.generate(**arguments))
        return JSONResponse(completion(kind, result, created, structured))
    encode = ChunkEncoder(kind, created, include_usage, structured)
    return await event_stream(request, pipeline.stream(**arguments), encode, openai_body)
