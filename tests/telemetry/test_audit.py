"""The audit trail fails closed: an admin action it cannot record is refused (503) and not
done; the trail is a file of its own, 0600, beside the benchmark log and apart from it."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.conftest import ServeFactory
from tests.helpers import ADMIN_KEY, client_of, sample

pytestmark = pytest.mark.anyio


async def test_an_action_that_cannot_be_recorded_is_refused_and_not_done(
    serve: ServeFactory, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the trail's folder should be")
    async with serve(audit_log=blocker / "audit.jsonl") as (app, _, service):
        async with client_of(app, key=ADMIN_KEY) as admin:
            refused = await admin.post("/switch", json={"model": "custom-b"})
            after_refusal = (await admin.get("/health")).json()["model"]
            shadow = await admin.post("/shadow", json={"model": "custom-b", "sample": 0.5})
            blocker.unlink()  # the disk is back
            done = await admin.post("/switch", json={"model": "custom-b"})
        errors = sample(service, "bankllm_audit_write_errors_total")
    assert (refused.status_code, refused.json()["error"]["type"]) == (503, "audit_unavailable")
    assert (after_refusal, shadow.status_code, done.status_code) == ("custom", 503, 200)
    assert errors == 3  # the start's row, and the two actions' asking
    trail = blocker / "audit.jsonl"
    rows = [json.loads(line) for line in trail.read_text().splitlines()]
    assert [(r["action"], r["result"]) for r in rows] == [("switch", "asked"), ("switch", "done")]
    assert stat.S_IMODE(trail.stat().st_mode) == 0o600


async def test_the_trail_is_its_own_file(serve: ServeFactory) -> None:
    async with serve() as (app, _, service):
        async with client_of(app, key=ADMIN_KEY) as admin:
            await admin.post("/switch", json={"model": "custom-b"})
        service.log.flush()
        logged = service.settings.benchmark_log.read_text().splitlines()
        trail = service.settings.audit_path.read_text()
    assert all(json.loads(line)["type"] != "admin" for line in logged)
    assert [json.loads(line)["result"] for line in trail.splitlines()] == ["done", "asked", "done"]
