"""What `bankllm train` and `bankllm finetune` learn from: a CSV or our own corpus, with our
out-of-scope messages and follow-up conversations mixed in unless turned off."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from app.banking.corpus import Example, build_corpus, read_csv
from app.banking.followups import FollowUpConversation, followup_conversations
from app.banking.out_of_scope import out_of_scope_examples


@dataclass(frozen=True)
class TrainingData:
    examples: list[Example]
    conversations: list[FollowUpConversation]
    source: str  # in words, for the log and the checkpoint's metadata


def add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, help="a text,category CSV (default: our own corpus)")
    p.add_argument(
        "--out-of-scope",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mix in our own out-of-scope messages (their training part), so the model learns "
        "to hand off what it does not serve (default: on)",
    )
    p.add_argument(
        "--followups",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also train on our own follow-up conversations, so the model reads a customer's "
        "latest turn with the earlier ones (default: on)",
    )


def training_data(args: argparse.Namespace) -> TrainingData:
    """The examples and conversations to learn from; a --data file that cannot be read ends
    the command with one line naming it and why."""
    examples = _read_data(args.data) if args.data else build_corpus()
    source = str(args.data) if args.data else "bankllm corpus (app/banking/data/phrasings.json)"
    if args.out_of_scope:
        handoffs = out_of_scope_examples("train")
        examples = [*examples, *handoffs]
        source += f" + {len(handoffs)} out-of-scope messages (app/banking/data/out_of_scope.json)"
    conversations = followup_conversations() if args.followups else []
    if conversations:
        source += (
            f" + {len(conversations)} follow-up conversations "
            "(app/banking/data/followup_training.json)"
        )
    return TrainingData(examples, conversations, source)


def _read_data(path: Path) -> list[Example]:
    try:
        return read_csv(path)
    except FileNotFoundError:
        reason = "no such file"
    except IsADirectoryError:
        reason = "a folder, not a CSV file"
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, or no text,category header
        reason = str(exc).removeprefix(f"{path}: ")
    raise SystemExit(f"--data {path}: {reason}")
