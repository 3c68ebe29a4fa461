"""GET /benchmarks/summary: per-model figures from the benchmark log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.api.deps import ServiceDep
from app.api.schemas import ErrorPublic

router = APIRouter(tags=["benchmarks"])


@router.get("/benchmarks/summary", responses={401: {"model": ErrorPublic}})
async def summary(service: ServiceDep) -> dict[str, Any]:
    """The same figures as the log's summary rows, over its newest 100,000 requests."""
    return await run_in_threadpool(service.benchmark_summary)
