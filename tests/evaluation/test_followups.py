"""The follow-up set: conversations of our own whose last turn needs the turns before it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from app.banking.followups import followup_conversations
from app.banking.intents import IntentSet

FOLLOWUPS = Path(__file__).resolve().parents[2] / "app" / "evaluation" / "data" / "followups.json"


def test_every_conversation_is_well_formed_and_labelled_with_an_intent() -> None:
    conversations = json.loads(FOLLOWUPS.read_text())
    intents = IntentSet.load()
    assert len(conversations) >= 200
    assert len({c["id"] for c in conversations}) == len(conversations)
    for c in conversations:
        users = [t for t in c["turns"] if t["role"] == "user"]
        assert 2 <= len(users) == len(c["intents"]) <= 3, c["id"]
        assert c["turns"][-1]["role"] == "user", c["id"]
        assert c["label"] == c["intents"][-1], c["id"]
        assert set(c["intents"]) <= set(intents.labels), c["id"]
        for before, after in zip(c["turns"], c["turns"][1:], strict=False):
            if after["role"] == "assistant":  # the approved reply of the turn it answers
                turn = [t for t in c["turns"] if t["role"] == "user"].index(before)
                assert after["content"] == intents.intents[c["intents"][turn]].reply, c["id"]
    # a set that is not one intent's: no label more than a few times
    assert max(Counter(c["label"] for c in conversations).values()) <= 8


def test_the_conversations_trained_on_share_no_message_with_the_set_measured_on() -> None:
    measured = {
        " ".join(t["content"].casefold().split())
        for c in json.loads(FOLLOWUPS.read_text())
        for t in c["turns"]
        if t["role"] == "user"
    }
    trained = {
        " ".join(turn.casefold().split()) for c in followup_conversations() for turn in c.turns
    }
    assert not trained & measured
