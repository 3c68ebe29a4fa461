"""GET /health (readiness) and GET /health/live (liveness)."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import PipelineDep
from app.errors import ModelUnavailable
from app.schemas import ErrorPublic, HealthPublic

router = APIRouter(tags=["health"])


@router.get("/health", responses={503: {"model": ErrorPublic}})
async def ready(pipeline: PipelineDep) -> HealthPublic:
    """200 while the active model can serve, else 503."""
    active = pipeline.active
    if active is None:
        raise ModelUnavailable("no model is loaded")
    return HealthPublic(
        status="ok", model=active.name, backend=active.backend, version=active.version
    )


@router.get("/health/live")
async def live() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}
