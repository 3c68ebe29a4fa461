"""Our own follow-up conversations: a customer's later turns, each one unclear alone and clear
with the turns before it. Written for this project, none taken from a data set, to teach a model
to read the latest turn in the light of the earlier ones. Training data only: the conversations
the follow-up figures are measured on (`app/evaluation/data/followups.json`) were written apart."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.banking.corpus import Example

DEFAULT_FOLLOWUPS = Path(__file__).resolve().parent / "data" / "followup_training.json"


@dataclass(frozen=True)
class FollowUpConversation:
    turns: tuple[str, ...]  # the customer's turns, oldest first
    intents: tuple[str, ...]  # one per turn


def followup_conversations(path: Path = DEFAULT_FOLLOWUPS) -> list[FollowUpConversation]:
    conversations = json.loads(path.read_text(encoding="utf-8"))["conversations"]
    return [FollowUpConversation(tuple(c["turns"]), tuple(c["intents"])) for c in conversations]


def in_conversation(
    train_set: Sequence[Example],
    conversations: Sequence[FollowUpConversation],
    share: float,
    rng: random.Random,
) -> list[Example]:
    """Training examples read with earlier turns: each later turn of the conversations whose
    intents the training set has, as written and with the opening said another way (a training
    question of its intent); and `share` of the single questions after an unrelated question,
    their label unchanged, so that a latest turn clear alone decides. Each earlier turn's intent
    is shown with it three times in four: a conversation whose replies are not the approved ones
    tells none, and the model must read those too."""
    by_label: dict[str, list[Example]] = defaultdict(list)
    for e in train_set:
        by_label[e.category].append(e)
    examples: list[Example] = []
    for n, c in enumerate(conversations):
        if not set(c.intents) <= by_label.keys():
            continue
        for opening in (c.turns[0], rng.choice(by_label[c.intents[0]]).text):
            turns = (opening, *c.turns[1:])
            known = tuple(_shown(intent, rng) for intent in c.intents)
            examples += [
                Example(turns[k], c.intents[k], f"conversation {n}", turns[:k], known[:k])
                for k in range(1, len(turns))
            ]
    for e in rng.sample(list(train_set), round(len(train_set) * share)):
        if (other := rng.choice(train_set)).category != e.category:
            shown = (_shown(other.category, rng),)
            examples.append(Example(e.text, e.category, e.group, (other.text,), shown))
    return examples


def _shown(intent: str, rng: random.Random) -> str | None:
    return intent if rng.random() < 0.75 else None
