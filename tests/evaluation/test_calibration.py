"""The hand-off threshold: chosen on labelled answers, written into the checkpoint, applied."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from app.backends.custom.gpt.checkpoint import read_config
from app.banking.corpus import Example, write_csv
from app.banking.intents import IntentSet, IntentSplitter
from app.cli import main
from app.evaluation.calibration import handoff_threshold
from app.evaluation.evaluate import ExampleAnswer
from app.settings import Settings
from tests.conftest import SettingsFactory
from tests.helpers import ADMIN_KEY, EVAL_KEY, USER_KEY, started


def _answer(confidence: float | None, handoff: str | None = None) -> ExampleAnswer:
    return ExampleAnswer(None if handoff else "card_arrival", "", 1.0, 1, "m", "custom", "v", None,
                         handoff, confidence)  # fmt: skip


def _in_scope(n: int) -> list[Example]:
    return [Example(f"question {i}", "card_arrival") for i in range(n)]


def test_the_threshold_hands_off_the_share_asked_of_in_scope_questions() -> None:
    answers = [_answer(c / 100) for c in range(1, 101)]  # 0.01 .. 1.00
    below = handoff_threshold(_in_scope(100), answers, 0.05)
    assert below == 0.06
    assert sum((a.confidence or 0) < below for a in answers) == 5


def test_out_of_scope_answers_to_in_scope_questions_spend_the_share_first() -> None:
    answers = [_answer(c / 100) for c in range(1, 98)] + [_answer(None, "out_of_scope")] * 3
    assert handoff_threshold(_in_scope(100), answers, 0.05) == 0.03  # 2 left: 0.01, 0.02
    spent = [_answer(0.5)] * 95 + [_answer(None, "out_of_scope")] * 5
    assert handoff_threshold(_in_scope(100), spent, 0.05) == 0.0
    out = [Example("weather?", "out_of_scope")] * 10  # their answers do not count
    assert handoff_threshold(_in_scope(100) + out, answers + [_answer(0.0)] * 10, 0.05) == 0.03


def test_nothing_to_choose_from_or_a_share_of_everything_is_refused() -> None:
    with pytest.raises(ValueError, match="no in-scope answer gave a confidence"):
        handoff_threshold(_in_scope(40), [_answer(None)] * 40, 0.5)
    with pytest.raises(ValueError, match="would hand off every in-scope answer"):
        handoff_threshold(_in_scope(4), [_answer(0.5)] * 2 + [_answer(None)] * 2, 0.5)
    with pytest.raises(ValueError, match="below 1"):
        handoff_threshold(_in_scope(4), [_answer(0.5)] * 4, 1.0)


def test_a_share_that_floats_just_short_still_counts_whole_questions() -> None:
    answers = [_answer(c / 100) for c in range(1, 101)]
    assert handoff_threshold(_in_scope(100), answers, 0.29) == 0.30  # 29 handed off, not 28


@pytest.mark.parametrize(("confidence", "expected"), [(0.3, "low_confidence"), (0.7, None)])
def test_an_intent_less_confident_than_the_threshold_is_a_hand_off(
    confidence: float, expected: str | None
) -> None:
    intents = IntentSet.load()
    splitter = IntentSplitter(intents, handoff_below=0.5)
    text = splitter.feed("intent: card_arrival\nYour card", confidence) + splitter.finish()
    assert splitter.handoff == expected
    assert splitter.named == "card_arrival"  # what the model said, whatever became of it
    if expected:
        assert (splitter.intent, text) == (None, intents.handoffs["low_confidence"])
    else:
        assert (splitter.intent, text) == ("card_arrival", "Your card")


async def _ask(settings: Settings, questions: list[str]) -> list[dict[str, Any]]:
    async with started(settings) as (_, client, _):
        return [
            (await client.post("/generate", json={"prompt": q, "temperature": 0})).json()
            for q in questions
        ]


def test_calibrate_writes_the_threshold_and_the_service_hands_off_below_it(
    make_settings: SettingsFactory,
    checkpoints: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings()
    checkpoint = tmp_path / "ck"
    shutil.copytree(checkpoints["a"], checkpoint)
    questions = ["my card has not arrived", "I lost my card", "how do I close my account",
                 "what is the exchange rate", "my top up failed", "I want a refund"]  # fmt: skip
    write_csv(tmp_path / "eval.csv", [Example(q, "card_arrival") for q in questions])
    env = tmp_path / ".env.eval"
    env.write_text(
        f"CUSTOM_CHECKPOINT={checkpoint}\nBENCHMARK_LOG={settings.benchmark_log}\n"
        f"API_KEYS={USER_KEY}\nEVAL_API_KEYS={EVAL_KEY}\nADMIN_API_KEY={ADMIN_KEY}\n"
    )
    flags = ["--model", "custom", "--data", str(tmp_path / "eval.csv"), "--env-file", str(env)]
    code = main(["eval", *flags, "--calibrate", "--handoff-share", "0.5", "--out-of-scope"])
    out = capsys.readouterr().out
    below = read_config(checkpoint)["meta"]["handoff_below"]
    assert code == 0
    assert f"hand-off threshold {below:.4f} written into {checkpoint}" in out
    assert "out of scope: handed off" in out  # the corpus' kept-aside part was asked too
    # the service on that checkpoint hands off an answer below it, and serves one above it
    bodies = asyncio.run(_ask(make_settings(custom_checkpoint=checkpoint), questions))
    for body in bodies:
        handed = body["confidence"] < below and body["handoff"] is None and body["intent"]
        assert not handed, json.dumps(body)
        if body["handoff"] == "low_confidence":
            assert body["text"] == IntentSet.load().handoffs["low_confidence"]
    assert any(b["handoff"] == "low_confidence" for b in bodies) == (below > 0)
