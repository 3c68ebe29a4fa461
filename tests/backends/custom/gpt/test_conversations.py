"""A follow-up read with the customer's earlier turns: the prompt, the training mix, the model."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from app.backends.catalog import load_adapter
from app.backends.custom.adapter import CustomAdapter
from app.backends.custom.gpt.checkpoint import load_checkpoint
from app.backends.custom.gpt.tokenizer import (
    BOS,
    EARLIER_TURNS,
    SEP,
    TURN,
    encode_prompt,
    special_id,
    train_tokenizer,
)
from app.backends.custom.gpt.train import train
from app.backends.custom.options import CustomOptions
from app.backends.protocol import Message, ModelSpec, SamplingParams, earlier_user_turns
from app.banking.corpus import Example
from app.banking.followups import (
    FollowUpConversation,
    followup_conversations,
    in_conversation,
)
from app.banking.intents import IntentSet
from app.models.asking import ask_once
from tests.helpers import TINY

TEXTS = ["my card is lost", "i sent money to a friend", "how long will it take", "fees"]


def _words(tokenizer: object, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False).ids)  # type: ignore[attr-defined]


def test_a_prompt_reads_the_latest_earlier_turns_each_ended_by_the_turn_token() -> None:
    tokenizer = train_tokenizer(TEXTS, 300, turns=True)
    bos, sep, turn = (special_id(tokenizer, t) for t in (BOS, SEP, TURN))
    earlier = ["fees", *TEXTS[:EARLIER_TURNS]]  # one more than is read: the oldest goes
    ids = encode_prompt(tokenizer, TEXTS[2], earlier)
    first, second = (_words(tokenizer, t) for t in TEXTS[:2])
    assert ids == [bos, *first, turn, *second, turn, *_words(tokenizer, TEXTS[2]), sep]


def test_the_oldest_turns_go_first_when_the_prompt_would_not_fit() -> None:
    tokenizer = train_tokenizer(TEXTS, 300, turns=True)
    latest, last = _words(tokenizer, TEXTS[2]), _words(tokenizer, TEXTS[1])
    room = 2 + len(latest) + len(last) + 1  # the latest, the turn before it, and its turn token
    ids = encode_prompt(tokenizer, TEXTS[2], TEXTS[:2], room=room)
    assert ids[1 : 1 + len(last)] == last
    assert len(ids) == room
    alone = encode_prompt(tokenizer, TEXTS[2], TEXTS[:2], room=room - 1)
    assert alone == encode_prompt(tokenizer, TEXTS[2])


def test_an_earlier_turn_s_established_intent_follows_it_as_its_label_token() -> None:
    labels = IntentSet.load().answer_labels
    tokenizer = train_tokenizer(TEXTS, 300, labels, turns=True)
    turn, lost = special_id(tokenizer, TURN), special_id(tokenizer, "lost_or_stolen_card")
    ids = encode_prompt(tokenizer, TEXTS[2], TEXTS[:2], None, ["lost_or_stolen_card", None])
    first, second = (_words(tokenizer, t) for t in TEXTS[:2])
    assert ids[1:-1] == [*first, lost, turn, *second, turn, *_words(tokenizer, TEXTS[2])]


def test_the_established_intent_is_read_from_the_approved_reply_that_answered_a_turn() -> None:
    intents = IntentSet.load()
    conversation = (
        Message("user", "I lost my card"),
        Message("assistant", intents.intents["lost_or_stolen_card"].reply),
        Message("user", "and?"),
        Message("assistant", "something the model made up"),
        Message("user", "when does the new one come"),
    )
    earlier = earlier_user_turns(conversation)
    assert [text for text, _ in earlier] == ["I lost my card", "and?"]
    assert [intents.intent_of_reply(reply) for _, reply in earlier] == [
        "lost_or_stolen_card",
        None,
    ]
    assert earlier_user_turns((Message("user", "a"), Message("user", "b"))) == (("a", None),)
    assert intents.intent_of_reply(intents.handoffs["out_of_scope"]) == "out_of_scope"
    # a system turn before the reply, and a client that kept the raw answer's intent line
    raw = intents.answer("card_arrival")
    turns = (Message("user", "a"), Message("system", "x"), Message("assistant", raw))
    [(_, reply)] = earlier_user_turns((*turns, Message("user", "b")))
    assert intents.intent_of_reply(reply) == "card_arrival"


def test_established_intents_are_one_per_earlier_turn_or_none() -> None:
    tokenizer = train_tokenizer(TEXTS, 300, turns=True)
    assert encode_prompt(tokenizer, "fees", (), None, ()) == encode_prompt(tokenizer, "fees")
    with pytest.raises(ValueError, match="1 established intents for 2 turns"):
        encode_prompt(tokenizer, "fees", TEXTS[:2], None, ["card_arrival"])


def test_a_tokenizer_without_the_turn_token_reads_the_latest_turn_alone() -> None:
    tokenizer = train_tokenizer(TEXTS, 300)
    assert tokenizer.token_to_id(TURN) is None
    assert encode_prompt(tokenizer, TEXTS[2], TEXTS[:2]) == encode_prompt(tokenizer, TEXTS[2])


def test_a_customer_typing_the_turn_token_types_plain_text() -> None:
    tokenizer = train_tokenizer(TEXTS, 300, turns=True)
    assert special_id(tokenizer, TURN) not in encode_prompt(tokenizer, f"fees {TURN} fees")


def test_the_mix_retells_each_opening_and_skips_intents_the_data_lacks() -> None:
    train_set = [
        Example("card gone", "lost_or_stolen_card"),
        Example("where is my card", "card_arrival"),
        Example("sent money", "transfer_timing"),
    ]
    taught = FollowUpConversation(
        ("I lost my card", "when does the new one come", "and now?"),
        ("lost_or_stolen_card", "card_arrival", "card_arrival"),
    )
    untaught = FollowUpConversation(("exchange rate?", "and the fee"), ("exchange_rate", "fees"))
    mixed = in_conversation(train_set, [taught, untaught], 0.0, random.Random(0))
    for e in mixed:  # each earlier turn's intent, where it is shown
        assert len(e.established) == len(e.earlier)
        assert set(e.established) <= {"lost_or_stolen_card", "card_arrival", None}
    assert [(e.text, e.category, e.earlier) for e in mixed] == [
        ("when does the new one come", "card_arrival", ("I lost my card",)),
        ("and now?", "card_arrival", ("I lost my card", "when does the new one come")),
        ("when does the new one come", "card_arrival", ("card gone",)),
        ("and now?", "card_arrival", ("card gone", "when does the new one come")),
    ]
    assert len({e.group for e in mixed}) == 1  # one conversation's turns: one group


def test_a_share_of_single_questions_is_also_asked_after_an_unrelated_one() -> None:
    train_set = [Example(f"question {i}", f"label {i % 4}") for i in range(400)]
    mixed = in_conversation(train_set, [], 0.5, random.Random(0))
    assert 120 < len(mixed) <= 200  # half of them, less those whose draw shared their label
    asked = {e.text: e.category for e in train_set}
    for e in mixed:
        assert asked[e.text] == e.category
        assert len(e.earlier) == 1
        assert asked[e.earlier[0]] != e.category


def test_our_followup_training_conversations_are_well_formed() -> None:
    conversations = followup_conversations()
    labels = set(IntentSet.load().answer_labels)
    assert len(conversations) >= 500
    for c in conversations:
        assert 2 <= len(c.turns) == len(c.intents) <= 3
        assert set(c.intents) <= labels
        assert all(t.strip() for t in c.turns)
    taught = {c.intents[k] for c in conversations for k in range(1, len(c.turns))}
    assert taught == labels  # every intent, and the hand-off, as a follow-up's answer


@pytest.mark.anyio
async def test_a_model_trained_on_conversations_reads_a_followup_by_its_context(
    tmp_path: Path,
) -> None:
    openings = {
        "card_arrival": ["I lost my card", "my card was stolen", "card gone missing"],
        "transfer_timing": ["I sent money to a friend", "made a bank transfer", "paid my rent"],
    }
    examples = [Example(t, label) for label, texts in openings.items() for t in texts]
    conversations = [
        FollowUpConversation((t, followup), (label, label))
        for label, texts in openings.items()
        for t in texts
        for followup in ("how long will it take", "when will it get there")
    ]
    config = replace(TINY, epochs=60, batch_size=8, unrelated_share=0.0)
    train(examples, IntentSet.load(), tmp_path, config, conversations=conversations, progress=False)
    spec = ModelSpec("custom", "custom", CustomOptions(checkpoint=tmp_path))
    adapter = await load_adapter(spec, IntentSet.load())
    greedy = SamplingParams(max_tokens=4, temperature=0.0)
    try:
        for label, opening in (("card_arrival", "card stolen"), ("transfer_timing", "paid rent")):
            asked = (Message("user", opening), Message("assistant", "..."))
            turns = (*asked, Message("user", "how long will it take"))
            reply = await ask_once(adapter, turns, greedy, IntentSet.load(), "block", 60.0)
            assert reply.intent == label
            # answered with the approved reply of an intent, the turn is read with its label
            answered = Message("assistant", IntentSet.load().intents[label].reply)
            turns = (Message("user", opening), answered, Message("user", "how long will it take"))
            prompt = cast(CustomAdapter, adapter).prompt_ids(turns)
            assert adapter_tokens(tmp_path).token_to_id(label) in prompt
    finally:
        await adapter.close()


def adapter_tokens(checkpoint: Path) -> Any:
    return load_checkpoint(checkpoint).tokenizer
