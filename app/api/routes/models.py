"""GET /models and POST /switch."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from fastapi import APIRouter

from app.api.deps import AdminId, ServiceDep
from app.api.schemas import (
    ErrorPublic,
    ModelPublic,
    ModelsPublic,
    SwitchPublic,
    SwitchRequest,
    error_responses,
)
from app.models.gate import Requirements

router = APIRouter(tags=["models"])


@router.get("/models", responses={401: {"model": ErrorPublic}})
async def list_models(service: ServiceDep) -> ModelsPublic:
    """Registered models, whether this install can load each, and which one serves."""
    active = service.active
    return ModelsPublic(
        active=active.name if active else None,
        models=[ModelPublic(**asdict(m)) for m in service.models()],
    )


@router.post(
    "/switch",
    responses=error_responses(400, 401, 403, 404, 408, 409, 412, 413, 415, 422, 503),
    response_model_exclude_unset=True,  # `replicas` only on Ray Serve
)
async def switch(body: SwitchRequest, service: ServiceDep, by: AdminId) -> SwitchPublic:
    """Hot-switch the active model (admin key). With `require`, the candidate's conditions
    are checked first, and a switch that fails one is refused (412, each condition's figure)."""
    require = None
    if (r := body.require) is not None:
        data = Path(r.eval_data) if r.eval_data is not None else None
        require = Requirements(**{**r.model_dump(), "eval_data": data})
    result = asdict(await service.switch(body.model, require, by))
    if result["replicas"] is None:
        del result["replicas"]
    return SwitchPublic(**result)
