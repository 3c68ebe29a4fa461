"""Our own corpus of messages a bank's servicing assistant must hand off: small talk, other
domains, advice the bank does not give, prompt injections, gibberish, other languages. Written
for this project, none taken from a data set. A fixed fifth of each category is kept aside, so
that training never sees the messages its hand-off rate is measured on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from app.banking.corpus import Example
from app.banking.intents import OUT_OF_SCOPE

DEFAULT_OUT_OF_SCOPE = Path(__file__).resolve().parent / "data" / "out_of_scope.json"
HELD_OUT_PERCENT = 20

Part = Literal["train", "held_out", "all"]


def _held_out(text: str) -> bool:
    """Whether a message is kept aside: by its hash, so the split never moves."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < HELD_OUT_PERCENT


def out_of_scope_examples(part: Part = "train", path: Path = DEFAULT_OUT_OF_SCOPE) -> list[Example]:
    """The corpus as `out_of_scope` examples; `part` picks the split."""
    categories: dict[str, list[str]] = json.loads(path.read_text(encoding="utf-8"))
    return [
        Example(text, OUT_OF_SCOPE)
        for texts in categories.values()
        for text in texts
        if part == "all" or _held_out(text) == (part == "held_out")
    ]
