"""Our out-of-scope corpus: large and varied enough to learn from, with a fixed part kept aside."""

from __future__ import annotations

import json
from collections import Counter

from app.banking.intents import OUT_OF_SCOPE, IntentSet
from app.banking.out_of_scope import DEFAULT_OUT_OF_SCOPE, out_of_scope_examples

# what the corpus promises to cover: other domains, advice a bank's assistant must not give,
# injections, gibberish and other languages
CATEGORIES = {
    "small_talk", "travel", "cooking", "weather", "maths", "shopping", "investment_advice",
    "tax_advice", "prompt_injection", "gibberish", "other_languages",
}  # fmt: skip


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def test_the_corpus_holds_1500_distinct_messages_across_its_categories() -> None:
    categories: dict[str, list[str]] = json.loads(DEFAULT_OUT_OF_SCOPE.read_text())
    messages = [text for texts in categories.values() for text in texts]
    assert set(categories) >= CATEGORIES
    assert all(len(categories[c]) >= 50 for c in CATEGORIES)
    assert len(messages) >= 1500
    assert all(text.strip() for text in messages)
    repeated = [t for t, n in Counter(map(_normal, messages)).items() if n > 1]
    assert repeated == []


def test_a_fifth_is_kept_aside_and_the_split_never_moves() -> None:
    train, held_out = out_of_scope_examples("train"), out_of_scope_examples("held_out")
    everything = out_of_scope_examples("all")
    assert {e.text for e in train}.isdisjoint({e.text for e in held_out})
    assert len(train) + len(held_out) == len(everything)
    assert 0.15 < len(held_out) / len(everything) < 0.25
    assert out_of_scope_examples("held_out") == held_out  # by hash: the same every run
    assert {e.category for e in everything} == {OUT_OF_SCOPE}


def test_no_message_of_the_corpus_is_a_banking_phrasing_of_ours() -> None:
    phrasings = json.loads((DEFAULT_OUT_OF_SCOPE.parent / "phrasings.json").read_text())
    ours = {_normal(t) for texts in phrasings.values() for t in texts}
    assert not ours & {_normal(e.text) for e in out_of_scope_examples("all")}


def test_the_hand_off_is_an_answer_a_model_can_be_trained_to_give() -> None:
    intents = IntentSet.load()
    assert intents.answer_labels == [*intents.labels, OUT_OF_SCOPE]
    assert (
        intents.answer(OUT_OF_SCOPE) == f"intent: {OUT_OF_SCOPE}\n{intents.handoffs[OUT_OF_SCOPE]}"
    )
    assert f"`{OUT_OF_SCOPE}`" in intents.system_prompt()
