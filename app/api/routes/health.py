"""GET /health (readiness) and GET /health/live (liveness)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ServiceDep
from app.api.schemas import HealthPublic, error_responses

router = APIRouter(tags=["health"])


@router.get("/health", responses=error_responses(503))
async def ready(service: ServiceDep) -> HealthPublic:
    """200 while the active model can serve, else 503. A model with a problem (its key
    rejected, its circuit open) is `degraded`: 200 while a fallback answers for it, else 503.
    One degraded only by a failed warm-up at start is 200 `degraded`: it takes requests, and
    the first answer clears it (a 503 would keep a load balancer from ever sending one).
    From SIGTERM on it is 503 `draining`, so that load balancers stop sending."""
    ready = service.readiness()
    return HealthPublic(
        status="ok" if ready.problem is None and ready.log_problem is None else "degraded",
        model=ready.model.name,
        backend=ready.model.backend,
        version=ready.model.version,
        problem=ready.problem,
        fallback=ready.fallback,
        log_problem=ready.log_problem,
    )


@router.get("/health/live")
async def live() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}
