"""Our own corpus of customer phrasings, expanded by templates, and `text,category` CSV files."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PHRASINGS = Path(__file__).resolve().parent / "data" / "phrasings.json"

# Ways customers open and close a message; combined with each phrasing to vary the surface form.
_OPENINGS = (
    "",
    "",
    "",
    "Hi, ",
    "Hello, ",
    "Hey, ",
    "Good morning, ",
    "Please help: ",
    "Quick question: ",
    "Excuse me, ",
    "Hi there, ",
    "Urgent: ",
)
_CLOSINGS = ("", "", "?", ".", "!", " please", " thanks", ", thank you", "??", " asap")


@dataclass(frozen=True)
class Example:
    text: str
    category: str
    group: str = ""  # the phrasing a templated example came from; held out together
    earlier: tuple[str, ...] = ()  # the customer's earlier turns, oldest first: a follow-up
    established: tuple[str | None, ...] = ()  # the intent each earlier turn was answered with


def read_csv(path: Path) -> list[Example]:
    """Rows of a `text,category` CSV; other columns are ignored."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"text", "category"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}; need text,category")
        return [Example(row["text"].strip(), row["category"].strip()) for row in reader]


def write_csv(path: Path, examples: list[Example]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "category"])
        writer.writerows([e.text, e.category] for e in examples)


def _slip(text: str, rng: random.Random) -> str:
    """One slip of a customer's fingers: a letter swapped, dropped or doubled in one word, or
    a word left out."""
    words = text.split()
    if len(words) < 3:
        return text
    i = rng.randrange(len(words))
    word, kind = words[i], rng.random()
    if kind < 0.8 and len(word) > 3:
        j = rng.randrange(len(word) - 1)
        if kind < 0.35:
            word = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
        elif kind < 0.6:
            word = word[:j] + word[j + 1 :]
        else:
            word = word[: j + 1] + word[j:]
        words[i] = word
    elif kind >= 0.8 and len(words) > 5:  # a short one would lose what it asks
        del words[i]
    return " ".join(words)


def _vary(phrasing: str, rng: random.Random) -> str:
    text = rng.choice(_OPENINGS) + phrasing + rng.choice(_CLOSINGS)
    style = rng.random()
    if style < 0.4:
        text = text[0].upper() + text[1:]
    elif style < 0.5:
        text = text.lower()
    return _slip(text, rng) if rng.random() < 0.5 else text


def build_corpus(path: Path = DEFAULT_PHRASINGS, variants: int = 6, seed: int = 0) -> list[Example]:
    """Every phrasing as written plus `variants` templated variants of it, shuffled."""
    phrasings: dict[str, list[str]] = json.loads(path.read_text())
    rng = random.Random(seed)
    examples = {
        Example(text, label, phrasing)
        for label, texts in phrasings.items()
        for phrasing in texts
        for text in [phrasing, *(_vary(phrasing, rng) for _ in range(variants))]
    }
    ordered = sorted(examples, key=lambda e: (e.category, e.text))
    rng.shuffle(ordered)
    return ordered
