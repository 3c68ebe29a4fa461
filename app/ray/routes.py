"""The fleet's own routes, on Ray Serve only: GET /fleet and Prometheus's discovery of replicas."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from app.api.schemas import ErrorPublic
from app.ray.fleet import Fleet

router = APIRouter(tags=["fleet"])


def _fleet(request: Request) -> Fleet:
    fleet: Fleet = request.app.state.fleet
    return fleet


@router.get("/fleet", responses={401: {"model": ErrorPublic}})
async def fleet(request: Request) -> dict[str, Any]:
    """What the fleet is set to (`model`, by which admin, publication `generation`), whether a
    switch runs, and each live replica: what it serves, its last switch, its /metrics."""
    return await _fleet(request).state()


@router.get("/metrics/replicas")
async def metrics_replicas(request: Request) -> list[dict[str, Any]]:
    """Prometheus HTTP service discovery (`http_sd_configs`): one target per live replica, each
    labelled with its `replica` id. Open, as /metrics is."""
    state = await _fleet(request).state()
    return [
        {"targets": [r["metrics"]], "labels": {"replica": r["replica"]}}
        for r in state["replicas"]
        if r["metrics"]
    ]
