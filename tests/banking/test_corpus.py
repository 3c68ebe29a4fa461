from __future__ import annotations

import csv
from pathlib import Path

import pytest

from app.banking.corpus import Example, build_corpus, read_csv, write_csv
from app.banking.intents import IntentSet
from tests.helpers import BANKING77_DIR

BANKING77_TRAIN = BANKING77_DIR / "train.csv"


def _normal(text: str) -> str:
    return " ".join(text.lower().strip(" ?.!,").split())


def test_corpus_covers_every_intent_with_several_phrasings() -> None:
    corpus = build_corpus()
    per_label = {
        label: {e.group for e in corpus if e.category == label} for label in IntentSet.load().labels
    }
    assert min(len(groups) for groups in per_label.values()) >= 40
    assert len(corpus) == len(set(corpus))


def test_corpus_is_deterministic_for_a_seed() -> None:
    assert build_corpus(seed=3) == build_corpus(seed=3)
    assert build_corpus(seed=3) != build_corpus(seed=4)


@pytest.mark.skipif(not BANKING77_TRAIN.is_file(), reason="Banking77 is not on this machine")
def test_no_corpus_sentence_is_a_banking77_sentence() -> None:
    with BANKING77_TRAIN.open(newline="") as f:
        theirs = {_normal(row["text"]) for row in csv.DictReader(f)}
    ours = {_normal(e.text) for e in build_corpus()}
    assert sorted(ours & theirs) == []


def test_csv_round_trip(tmp_path: Path) -> None:
    examples = [
        Example('where is, "my" card', "card_arrival"),
        Example("lost it", "lost_or_stolen_card"),
    ]
    write_csv(tmp_path / "data.csv", examples)
    assert read_csv(tmp_path / "data.csv") == examples


def test_csv_without_the_columns_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("sentence,label\nhello,card_arrival\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['category', 'text'\]"):
        read_csv(tmp_path / "bad.csv")
