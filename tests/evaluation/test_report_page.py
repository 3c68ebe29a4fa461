"""The comparison a bank decides on, end to end: two checkpoints served as `custom`, a Gemini
model (the real SDK against the fake server), echo and a caller's mistake, written to one log
by the service; `bankllm report` tells them apart, and its HTML page, opened in Debian's
chromium, holds the same tables and figures."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.cli import main
from app.settings import Settings
from tests.conftest import ServeFactory
from tests.helpers import ADMIN_KEY, EVAL_KEY, read_log

pytestmark = pytest.mark.anyio
CHROMIUM = shutil.which("chromium")
EVALUATOR = {"Authorization": f"Bearer {EVAL_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
LABELLED = 30  # each model's labelled answers: the minimum the recommendation decides from


async def _ask(client: httpx.AsyncClient, count: int) -> None:
    for i in range(count):
        body = {"prompt": f"my new card {i} has still not arrived", "label": "card_arrival"}
        response = await client.post("/generate", json=body, headers=EVALUATOR)
        assert response.status_code == 200, response.text


def _custom_version(rows: list[dict[str, Any]]) -> str:
    return str(next(r["version"] for r in reversed(rows) if r.get("model") == "custom"))


async def _write_log(
    serve: ServeFactory, settings_for: Callable[..., Settings], checkpoints: dict[str, Path]
) -> tuple[Path, list[str]]:
    """The log of two runs, one a checkpoint served as `custom`; its versions, in run order."""
    first = settings_for(custom_checkpoint=checkpoints["a"])
    async with serve(first) as (_, client, service):
        await _ask(client, LABELLED)
        too_long = {"prompt": "card " * 700}  # more than the tiny model's context holds
        refused = await client.post("/generate", json=too_long, headers=EVALUATOR)
        assert refused.status_code == 422  # the caller's mistake, never the model's
        for model, count in (("gemini", LABELLED), ("echo", 3)):
            switched = await client.post("/switch", json={"model": model}, headers=ADMIN)
            assert switched.status_code == 200, switched.text
            await _ask(client, count)
        versions = [_custom_version(read_log(first, service))]
    second = settings_for(custom_checkpoint=checkpoints["b"])
    async with serve(second) as (_, client, service):
        await _ask(client, LABELLED)
        versions.append(_custom_version(read_log(second, service)))
    return second.benchmark_log, versions


async def test_the_report_tells_checkpoints_apart_and_its_page_shows_it_in_a_browser(
    serve: ServeFactory,
    gemini_settings: Callable[..., Settings],
    checkpoints: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log, versions = await _write_log(serve, gemini_settings, checkpoints)
    page = tmp_path / "report.html"
    assert main(["report", str(log), "--html", str(page), "--plot", str(tmp_path / "r.png")]) == 0
    out = capsys.readouterr().out.splitlines()
    headers = [i for i, line in enumerate(out) if line.startswith("model ")]
    speed = out[headers[0] + 1 : headers[1]]  # the first table: speed and errors
    names = [*sorted(f"custom@{version}" for version in versions), "gemini"]
    assert len(set(versions)) == 2
    assert [line.split()[0] for line in speed] == names  # four models, echo apart:
    assert any(line.startswith("echo, no model (the service's overhead)") for line in out)
    errors = {line.split()[0]: line.split()[-2:] for line in speed}
    assert errors[f"custom@{versions[0]}"] == ["0.0%", "1"]  # the 422: the caller's, apart
    recommendation = out[-3]
    assert recommendation.startswith("Use ")
    assert "95% interval" in recommendation
    assert "labelled answers" in recommendation
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    await _open_in_chromium(page, names, recommendation)


async def _open_in_chromium(page: Path, names: list[str], recommendation: str) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            tab = await browser.new_page()
            await tab.goto(page.as_uri())
            for table in ("speed", "quality"):
                first_cells = await tab.locator(
                    f"table#{table} tbody tr td:first-child"
                ).all_inner_texts()
                assert first_cells == names
            assert await tab.locator("#recommendation").inner_text() == recommendation
            assert "echo" in await tab.locator("#overhead").inner_text()
            for figure in ("accuracy", "latency", "cost"):
                image = tab.locator(f"#figure-{figure} img")
                # a PNG the browser decoded: drawn, not a broken image
                assert await image.evaluate("i => i.complete && i.naturalWidth") > 300
        finally:
            await browser.close()
