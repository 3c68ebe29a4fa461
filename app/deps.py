"""Dependencies: the pipeline from the app's state, its settings, and the admin who acts.

Keys are checked before any route by `app.access.KeyCheck`; the routes only read who called."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.access import caller_of
from app.pipeline import Pipeline

# Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker
# thread, a hop that costs a request more than the dependency itself.


async def get_pipeline(request: Request) -> Pipeline:
    pipeline: Pipeline = request.app.state.pipeline
    return pipeline


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]


async def get_admin_id(request: Request) -> str:
    """The admin key's id (a short hash) that names the admin in the audit trail."""
    return caller_of(request).key_id


AdminId = Annotated[str, Depends(get_admin_id)]
