"""The soak of benchmarks/soak.py, small: mixed requests while the model flips, then every
request held against its one row, the summary rows and the gauges."""

from __future__ import annotations

import pytest

from benchmarks.overhead import KEY
from benchmarks.soak import ADMIN, soak
from tests.conftest import SettingsFactory
from tests.helpers import serving

pytestmark = pytest.mark.anyio


async def test_a_short_soak_loses_nothing_while_the_model_flips(
    make_settings: SettingsFactory,
) -> None:
    from app.main import create_app

    settings = make_settings(api_keys=KEY, admin_api_key=ADMIN, benchmark_every=50)
    with serving(create_app(settings)) as url:
        result = await soak(
            url,
            settings.benchmark_log,
            requests=300,
            concurrency=16,
            switch_every_s=0.2,
            models=("custom", "custom-b"),
            max_s=120,
        )
    assert (result.failed, result.failed_streams, result.torn) == (0, 0, 0), result.report()
    assert result.switches["ok"] >= 1
    assert result.switches["failed"] == 0
    assert (sum(result.statuses.values()), sum(result.rows.values())) == (300, 300)
    assert result.rows["ok"] == result.statuses[200]
    assert result.ok_rows_answered
    assert result.summaries == 300 // 50
    assert result.gauges == {"bankllm_requests_in_flight": 0.0, "bankllm_queue_depth": 0.0}
