"""GET, POST and DELETE /shadow: the candidate that live traffic is mirrored to (admin key)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import AdminDep, AdminId
from app.api.schemas import ShadowRequest, error_responses

router = APIRouter(tags=["shadow"])
_ERRORS = (400, 401, 403, 404, 408, 409, 413, 415, 422, 503)


@router.get("/shadow", responses=error_responses(401, 403))
async def shadow(admin: AdminDep, by: AdminId) -> dict[str, Any]:
    """The shadow now (model, sample, queue, drops, spend), and per shadow over the log's
    newest rows: samples, intent agreement with its 95% Wilson interval, the intents it
    disagrees on most, its error rate, p50/p95 latency beside the live model's, and the
    accuracy of each side on labelled requests."""
    return await admin.shadow_report()


@router.post("/shadow", responses=error_responses(*_ERRORS))
async def set_shadow(body: ShadowRequest, admin: AdminDep, by: AdminId) -> dict[str, Any]:
    """Mirror `sample` of live requests to `model` (loaded beside the active one)."""
    await admin.set_shadow(body.model, body.sample, by)
    return await admin.shadow_report()


@router.delete("/shadow", responses=error_responses(401, 403))
async def clear_shadow(admin: AdminDep, by: AdminId) -> dict[str, Any]:
    """Stop mirroring; the shadow is unloaded unless another role holds it."""
    await admin.clear_shadow(by)
    return await admin.shadow_report()
