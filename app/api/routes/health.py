"""GET /health (readiness) and GET /health/live (liveness)."""

from __future__ import annotations

import re

from fastapi import APIRouter

from app.api.deps import PipelineDep
from app.api.schemas import HealthPublic, error_responses
from app.errors import Draining, ModelDegraded, ModelUnavailable

router = APIRouter(tags=["health"])
# an absolute path in a message: a public probe names the file, not the server's folders
_PATH = re.compile(r"(?<![\w.~:/-])/(?:[^\s/'\":]+/)+([^\s/'\":]+)")


def _unplaced(text: str | None) -> str | None:
    return None if text is None else _PATH.sub(r"…/\1", text)


@router.get("/health", responses=error_responses(503))
async def ready(pipeline: PipelineDep) -> HealthPublic:
    """200 while the active model can serve, else 503. A model with a problem (its key
    rejected, its circuit open) is `degraded`: 200 while a fallback answers for it, else 503.
    One degraded only by a failed warm-up at start is 200 `degraded`: it takes requests, and
    the first answer clears it (a 503 would keep a load balancer from ever sending one).
    From SIGTERM on it is 503 `draining`, so that load balancers stop sending."""
    if (drain := pipeline.drain).draining:
        raise Draining(in_flight=drain.in_flight, grace_left_s=round(drain.grace_left_s(), 1))
    active = pipeline.active
    if active is None and (retry := pipeline.startup.retry) is not None:
        details = {"model": retry.model, "attempts": retry.attempts}
        details["next_attempt_in_s"] = retry.next_attempt_in_s()
        why = _unplaced(retry.describe())
        raise ModelUnavailable(f"{retry.model} is not loaded: {why}", details)
    if active is None:
        raise ModelUnavailable("no model is loaded")
    problem = _unplaced(pipeline.problem)
    if (failing := _unplaced(pipeline.failing)) is not None and pipeline.fallback is None:
        raise ModelDegraded(failing, {"model": active.name, "backend": active.backend})
    log_problem = _unplaced(pipeline.log.problem)  # the service answers, its rows are lost
    return HealthPublic(
        status="ok" if problem is None and log_problem is None else "degraded",
        model=active.name,
        backend=active.backend,
        version=active.version,
        problem=problem,
        fallback=pipeline.fallback if problem else None,
        log_problem=log_problem,
    )


@router.get("/health/live")
async def live() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}
