from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.backends.custom.gpt.checkpoint import load_checkpoint
from app.backends.custom.gpt.tokenizer import TURN
from app.backends.custom.gpt.train import TrainConfig
from app.banking.corpus import Example, write_csv
from app.banking.followups import followup_conversations
from app.banking.intents import OUT_OF_SCOPE
from app.banking.out_of_scope import out_of_scope_examples
from app.cli import build_parser, main


def test_train_on_a_csv_writes_a_servable_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [Example(f"my card has not come {i}", "card_arrival") for i in range(6)]
    rows += [Example(f"I lost my card {i}", "lost_or_stolen_card") for i in range(6)]
    write_csv(tmp_path / "data.csv", rows)
    code = main(
        [
            "train",
            "--data",
            str(tmp_path / "data.csv"),
            "--out",
            str(tmp_path / "ck"),
            "--epochs",
            "2",
            "--layers",
            "1",
            "--heads",
            "2",
            "--width",
            "32",
            "--vocab",
            "280",
            "--batch-size",
            "8",
            "--val-fraction",
            "0.2",
            "--no-out-of-scope",
            "--no-followups",
            "--min-accuracy",
            "0",  # two epochs of a tiny model: any accuracy will do here
        ]
    )
    out = capsys.readouterr().out
    ckpt = load_checkpoint(tmp_path / "ck")
    assert code == 0
    assert out.startswith(f"training on 12 examples from {tmp_path / 'data.csv'}\n")
    assert re.search(
        r"^epoch 2 \(\d+ s\): loss \d+\.\d+, "
        r"held-out intent accuracy \d+\.\d%, word for word \d+\.\d%$",
        out,
        re.M,
    )
    assert out.rstrip().endswith(f"curve: {tmp_path / 'ck' / 'training_curve.png'}")
    assert f"saved {tmp_path / 'ck'} (version {ckpt.version}): " in out
    assert ckpt.meta["data"] == str(tmp_path / "data.csv")
    assert ckpt.model.config.n_embd == 32


def test_train_mixes_our_out_of_scope_messages_and_followups_in_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [Example(f"my card has not come {i}", "card_arrival") for i in range(6)]
    write_csv(tmp_path / "data.csv", rows)
    flags = ["--epochs", "1", "--layers", "1", "--heads", "2", "--width", "32"]
    flags += ["--vocab", "400", "--batch-size", "64", "--val-fraction", "0"]
    where = ["--data", str(tmp_path / "data.csv"), "--out", str(tmp_path / "ck")]
    code = main(["train", *where, *flags])
    out = capsys.readouterr().out
    taught, conversations = len(out_of_scope_examples("train")), len(followup_conversations())
    assert code == 0
    assert out.startswith(
        f"training on {6 + taught} examples from {tmp_path / 'data.csv'} + {taught} "
        "out-of-scope messages (app/banking/data/out_of_scope.json) + "
        f"{conversations} follow-up conversations (app/banking/data/followup_training.json)\n"
    )
    # the hand-off is one label token, as every intent is; earlier turns have theirs
    tokenizer = load_checkpoint(tmp_path / "ck").tokenizer
    assert tokenizer.token_to_id(TURN) is not None
    assert tokenizer.token_to_id(OUT_OF_SCOPE) is not None
    assert tokenizer.encode(OUT_OF_SCOPE, add_special_tokens=False).ids == [
        tokenizer.token_to_id(OUT_OF_SCOPE)
    ]


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.csv", None, "no such file"),
        ("folder", "", "a folder, not a CSV file"),
        (
            "wrong.csv",
            "question,label\nhi,greeting\n",
            "missing column(s) ['category', 'text']; need text,category",
        ),
    ],
)
@pytest.mark.parametrize("command", [["train"], ["finetune", "--base", "unused"]])
def test_a_data_file_that_cannot_be_read_is_one_line_naming_it(
    tmp_path: Path, command: list[str], name: str, content: str | None, reason: str
) -> None:
    data = tmp_path / name
    if name == "folder":
        data.mkdir()
    elif content is not None:
        data.write_text(content)
    with pytest.raises(SystemExit) as exc:
        main([*command, "--data", str(data), "--out", str(tmp_path / "out")])
    assert exc.value.code == f"--data {data}: {reason}"


@pytest.mark.parametrize("decay", ["1", "-0.1", "1.5"])
def test_train_refuses_an_ema_decay_outside_0_to_1(
    decay: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["train", "--ema-decay", decay])
    assert exc.value.code == 2
    assert f"--ema-decay: {decay}: a decay is at least 0 and below 1" in capsys.readouterr().err


def test_train_takes_an_ema_decay_and_defaults_to_the_recipes() -> None:
    assert build_parser().parse_args(["train", "--ema-decay", "0"]).ema_decay == 0.0
    assert build_parser().parse_args(["train"]).ema_decay == TrainConfig().ema_decay


def test_serve_takes_an_env_file_host_and_port() -> None:
    args = build_parser().parse_args(["serve", "--env-file", ".env.custom", "--port", "9000"])
    assert (args.env_file, args.host, args.port) == (".env.custom", "127.0.0.1", 9000)


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "the following arguments are required: command" in capsys.readouterr().err


TINY = ["--layers", "1", "--heads", "2", "--width", "32", "--vocab", "280", "--batch-size", "8"]


def tiny_data(tmp_path: Path) -> Path:
    rows = [Example(f"my card has not come {i}", "card_arrival") for i in range(6)]
    rows += [Example(f"I lost my card {i}", "lost_or_stolen_card") for i in range(6)]
    write_csv(tmp_path / "data.csv", rows)
    return tmp_path / "data.csv"


def test_a_budget_that_ends_inside_the_first_epoch_is_refused_saying_what_one_takes(
    tmp_path: Path,
) -> None:
    asked = ["train", "--data", str(tiny_data(tmp_path)), *TINY, "--minutes", "0.001"]
    with pytest.raises(SystemExit) as exc:
        main([*asked, "--out", str(tmp_path / "refused")])
    message = str(exc.value.code)
    assert message.startswith("bankllm train: a budget of 0.001 min ends inside the first epoch")
    assert re.search(r"takes about \d+\.\d min on this machine now", message)
    assert not (tmp_path / "refused").exists()  # nothing half-learned is saved
    code = main(
        [*asked, "--out", str(tmp_path / "partial"), "--allow-partial", "--min-accuracy", "0"]
    )
    assert code == 0
    assert load_checkpoint(tmp_path / "partial").version


def test_a_run_below_the_accuracy_floor_says_so_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asked = ["train", "--data", str(tiny_data(tmp_path)), *TINY, "--epochs", "1", "--lr", "0"]
    code = main([*asked, "--out", str(tmp_path / "ck"), "--min-accuracy", "1.01"])
    err = capsys.readouterr().err
    assert code == 1
    assert "bankllm train: FAILED: the best held-out intent accuracy" in err
    assert "is below --min-accuracy 101%" in err
