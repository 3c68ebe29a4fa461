from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.banking.corpus import Example, write_csv
from app.banking.intents import IntentSet
from app.cli import main
from app.evaluation.evaluate import ExampleAnswer, evaluate
from app.settings import Settings
from tests.conftest import Served, SettingsFactory
from tests.helpers import ADMIN_KEY, EVAL_KEY, USER_KEY


def _data(tmp_path: Path) -> Path:
    rows = [
        Example("my card has not arrived", "card_arrival"),
        Example("I lost my card", "lost_or_stolen_card"),
        Example("how do I close my account", "terminate_account"),
    ]
    write_csv(tmp_path / "eval.csv", rows)
    return tmp_path / "eval.csv"


def _eval_rows(settings: Settings) -> list[dict[str, object]]:
    lines = settings.benchmark_log.read_text().splitlines()
    return [row for row in map(json.loads, lines) if row["type"] == "eval"]


def _env(settings: Settings, tmp_path: Path) -> Path:
    env = tmp_path / ".env.eval"
    env.write_text(
        f"CUSTOM_CHECKPOINT={settings.custom.checkpoint}\n"
        f"BENCHMARK_LOG={settings.benchmark_log}\nMODELS_FILE={settings.models_file}\n"
        "ENABLE_ECHO_MODEL=true\n"
        f"API_KEYS={USER_KEY}\nEVAL_API_KEYS={EVAL_KEY}\nADMIN_API_KEY={ADMIN_KEY}\n"
    )
    return env


def test_eval_in_process_prints_the_scores_and_logs_a_row(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _data(tmp_path)
    code = main(
        [
            "eval",
            "--model",
            "echo",
            "--data",
            str(data),
            "--env-file",
            str(_env(settings, tmp_path)),
            "--concurrency",
            "2",
        ]
    )
    out = capsys.readouterr().out
    rows = _eval_rows(settings)
    assert code == 0
    # echo always answers card_arrival: one of three right; F1 0.5 for that label, 0 for two
    assert out.splitlines()[:2] == [
        f"model echo (echo, version fixed-reply-1) on 3 examples of {data}",
        "accuracy 33.3%   macro-F1 16.7%   approved reply 0.0%   no intent 0   failed 0",
    ]
    assert "  1: lost_or_stolen_card -> card_arrival" in out
    assert len(rows) == 1
    assert {k: rows[0][k] for k in ("model", "examples", "accuracy", "macro_f1", "errors")} == {
        "model": "echo",
        "examples": 3,
        "accuracy": 0.3333,
        "macro_f1": 0.1667,
        "errors": 0,
    }
    assert rows[0]["confused"] == [
        ["lost_or_stolen_card", "card_arrival", 1],
        ["terminate_account", "card_arrival", 1],
    ]


def test_eval_over_http_switches_the_service_first(
    server: Served,
    make_settings: SettingsFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, served, service = server
    mine = make_settings(benchmark_log=tmp_path / "mine.jsonl")
    env = _env(mine, tmp_path)
    code = main(
        [
            "eval",
            "--model",
            "echo",
            "--data",
            str(_data(tmp_path)),
            "--url",
            url,
            "--env-file",
            str(env),
            "--limit",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "accuracy 50.0%" in out
    assert [r["examples"] for r in _eval_rows(mine)] == [2]
    service.log.flush()  # the server's rows of the answers just received
    served_rows = [json.loads(line) for line in served.benchmark_log.read_text().splitlines()]
    assert [r["model"] for r in served_rows if r["type"] == "request"] == ["echo", "echo"]


@pytest.mark.anyio
async def test_evaluate_scores_intents_replies_failures_and_speed() -> None:
    intents = IntentSet.load()
    answers = {
        "a": ExampleAnswer(
            "card_arrival", intents.intents["card_arrival"].reply, 10.0, 40, "m", "b", "v"
        ),
        "b": ExampleAnswer("card_arrival", "something else", 30.0, 20, "m", "b", "v"),
        "c": ExampleAnswer(None, "", 0.0, 0, "m", "b", "v", error="timeout"),
    }

    async def ask(text: str, label: str) -> ExampleAnswer:
        return answers[text]

    examples = [
        Example("a", "card_arrival"),
        Example("b", "lost_or_stolen_card"),
        Example("c", "card_arrival"),
    ]
    report = await evaluate(ask, examples, intents, data="x.csv", concurrency=2, progress=False)
    assert (report.accuracy, report.reply_match, report.unparsed, report.errors) == (
        1 / 3,
        1 / 3,
        1,
        1,
    )
    assert (report.p50_ms, report.p95_ms) == (20.0, 29.0)  # failed requests have no latency
    assert report.confused == [
        ("card_arrival", "(none)", 1),
        ("lost_or_stolen_card", "card_arrival", 1),
    ]
    assert report.tokens_per_s == 60 / report.seconds
    assert report.row()["type"] == "eval"


def test_bench_switches_then_loads_each_level_and_logs_a_row(
    server: Served,
    make_settings: SettingsFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _, _ = server
    mine = make_settings(benchmark_log=tmp_path / "mine.jsonl")
    code = main(
        [
            "bench",
            "--url",
            url,
            "--model",
            "echo",
            "--concurrency",
            "1,3",
            "--requests",
            "6",
            "--stream",
            "--slo-ttft-ms",
            "10000",
            "--env-file",
            str(_env(mine, tmp_path)),
            "--json",
            str(tmp_path / "bench.json"),
        ]
    )
    out = capsys.readouterr().out.splitlines()
    rows = [json.loads(line) for line in mine.benchmark_log.read_text().splitlines()]
    assert code == 0
    assert out[0] == (
        f"model echo (echo, version fixed-reply-1) at {url}, 6 requests per "
        "level, max_tokens 64, streamed"
    )
    assert [line.split()[:3] for line in out[2:]] == [["1", "6", "0"], ["3", "6", "0"]]
    assert [(r["type"], r["concurrency"], r["completed"]) for r in rows] == [
        ("bench", 1, 6),
        ("bench", 3, 6),
    ]
    assert all(r["total_output_tokens"] == 6 * 15 and r["request_goodput"] > 0 for r in rows)
    assert json.loads((tmp_path / "bench.json").read_text()) == rows


def test_bench_and_eval_say_why_the_service_refused_them(
    server: Served,
    make_settings: SettingsFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _, _ = server
    wrong = make_settings(benchmark_log=tmp_path / "mine.jsonl")
    env = _env(wrong, tmp_path)
    env.write_text(
        env.read_text()
        .replace(USER_KEY, "not-the-services-key")
        .replace(EVAL_KEY, "not-the-services-key")
    )
    args = ["--url", url, "--env-file", str(env)]
    code = main(["bench", *args, "--concurrency", "2", "--requests", "3"])
    err = capsys.readouterr().err
    assert code == 1  # nothing was answered
    assert "c=2: 3 failed: 401 unauthorized: " in err
    with pytest.raises(SystemExit) as exc:
        main(["eval", *args, "--model", "custom-random", "--data", str(_data(tmp_path))])
    assert str(exc.value.code).startswith(f"{url}: 401 unauthorized: ")
