"""A `label` says which intent a prompt has, and moves the accuracy that admins switch models
on: it counts only from an evaluation key or the admin key, and only when it is an intent."""

from __future__ import annotations

import pytest

from tests.conftest import ServeFactory
from tests.helpers import ADMIN_KEY, EVAL_KEY, read_log

pytestmark = pytest.mark.anyio
ASK = {"prompt": "my card has not arrived", "max_tokens": 8, "temperature": 0}


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_label_counts_only_from_an_evaluation_or_the_admin(
    serve: ServeFactory,
) -> None:
    labelled = ASK | {"label": "card_arrival"}
    async with serve(active_model="echo") as (_, client, service):
        by_user = await client.post("/generate", json=labelled)  # the client's key is a user's
        by_eval = await client.post("/generate", json=labelled, headers=_as(EVAL_KEY))
        by_admin = await client.post("/generate", json=labelled, headers=_as(ADMIN_KEY))
        rows = read_log(service.settings, service)
    assert [r.status_code for r in (by_user, by_eval, by_admin)] == [403, 200, 200]
    assert by_user.json()["error"]["type"] == "forbidden"
    assert "EVAL_API_KEYS" in by_user.json()["error"]["message"]
    assert [(r["status"], r["label"]) for r in rows] == [
        ("rejected", None),
        ("ok", "card_arrival"),
        ("ok", "card_arrival"),
    ]


@pytest.mark.parametrize("label", ["4111 1111 1111 1111", "Card_Arrival", "card_arrival ", ""])
async def test_a_label_that_is_no_intent_is_refused_and_never_stored(
    serve: ServeFactory, label: str
) -> None:
    async with serve(active_model="echo") as (_, client, service):
        response = await client.post(
            "/generate", json=ASK | {"label": label}, headers=_as(EVAL_KEY)
        )
        rows = read_log(service.settings, service)
    assert response.status_code == 422
    assert response.json()["error"]["details"] == {"label": "not an intent"}
    assert [(r["status"], r["label"]) for r in rows] == [("bad_request", None)]
