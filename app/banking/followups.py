"""Our own follow-up conversations: a customer's later turns, each one unclear alone and clear
with the turns before it. Written for this project, none taken from a data set, to teach a model
to read the latest turn in the light of the earlier ones. Training data only: the conversations
the follow-up figures are measured on (`app/evaluation/data/followups.json`) were written apart."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_FOLLOWUPS = Path(__file__).resolve().parent / "data" / "followup_training.json"


@dataclass(frozen=True)
class FollowUpConversation:
    turns: tuple[str, ...]  # the customer's turns, oldest first
    intents: tuple[str, ...]  # one per turn


def followup_conversations(path: Path = DEFAULT_FOLLOWUPS) -> list[FollowUpConversation]:
    conversations = json.loads(path.read_text(encoding="utf-8"))["conversations"]
    return [FollowUpConversation(tuple(c["turns"]), tuple(c["intents"])) for c in conversations]
