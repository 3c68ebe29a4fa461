"""Dependencies: the service's parts from the app's state, and the caller and admin who act.

Keys are checked before any route by `app.api.access.KeyCheck`; the routes only read who called."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.api.access import ADMIN_ONLY, Caller, caller_of
from app.errors import Forbidden
from app.models.admin import Admin
from app.service import Service
from app.serving.pipeline import Pipeline

# Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker
# thread, a hop that costs a request more than the dependency itself.


async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


async def get_pipeline(request: Request) -> Pipeline:
    """The request path alone: what the generating routes need."""
    service: Service = request.app.state.service
    return service.pipeline


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]


async def get_admin(request: Request) -> Admin:
    service: Service = request.app.state.service
    return service.admin


AdminDep = Annotated[Admin, Depends(get_admin)]


async def get_caller(request: Request) -> Caller:
    return caller_of(request)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def get_admin_id(request: Request) -> str:
    """The admin key's id (a short hash) that names the admin in the audit trail. Refuses a
    user key, should a route that takes it be missing from `app.api.access.ADMIN_PATHS`."""
    caller = caller_of(request)
    if caller.role not in ("admin", "open"):
        raise Forbidden(ADMIN_ONLY)
    return caller.key_id


AdminId = Annotated[str, Depends(get_admin_id)]
