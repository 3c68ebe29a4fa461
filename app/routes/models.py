"""GET /models and POST /switch."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from app.deps import AdminKey, ApiKey, PipelineDep
from app.schemas import (
    ErrorPublic,
    ModelPublic,
    ModelsPublic,
    SwitchPublic,
    SwitchRequest,
    error_responses,
)

router = APIRouter(tags=["models"])


@router.get("/models", dependencies=[ApiKey], responses={401: {"model": ErrorPublic}})
async def list_models(pipeline: PipelineDep) -> ModelsPublic:
    """Registered models, whether this install can load each, and which one serves."""
    active = pipeline.active
    return ModelsPublic(
        active=active.name if active else None,
        models=[ModelPublic(**asdict(m)) for m in pipeline.models()],
    )


@router.post(
    "/switch",
    dependencies=[AdminKey],
    responses=error_responses(400, 401, 403, 404, 408, 409, 413, 415, 422, 503),
)
async def switch(body: SwitchRequest, pipeline: PipelineDep) -> SwitchPublic:
    """Hot-switch the active model (admin key)."""
    result = await pipeline.switch(body.model)
    return SwitchPublic(**asdict(result))
