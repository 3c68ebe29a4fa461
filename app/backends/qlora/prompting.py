"""Prompts for a fine-tuned chat model: the tokenizer's chat template around a short banking
system prompt, the same in `bankllm finetune` and in serving (the adapter folder records it)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

# The adapter learned the 77 labels in fine-tuning; the long intent list of the cloud prompt
# would only cost context here.
SYSTEM_PROMPT = (
    "You are the assistant of a retail bank. Answer with a first line `intent: <label>` naming "
    "the customer's intent, then a short, polite reply."
)
INTENT_PREFIX = "intent:"
META_FILE = "bankllm.json"  # beside the adapter: how it was trained, and its system prompt


# Where the template puts each message's words: private-use characters no text carries.
_SLOT = re.compile("\ue000([0-9]+)\ue001")


class ChatTokenizer(Protocol):
    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...

    def __call__(self, text: str, **kwargs: Any) -> Any: ...


def chat_messages(
    turns: Sequence[tuple[str, str]], system: str = SYSTEM_PROMPT
) -> list[dict[str, str]]:
    """The messages of a chat template: ours first; a caller's system turns (where settings
    allow them) after it, in the one system message chat templates accept."""
    extra = [content for role, content in turns if role == "system"]
    messages = [{"role": "system", "content": "\n\n".join([system, *extra])}]
    return messages + [{"role": r, "content": c} for r, c in turns if r != "system"]


def chat_ids(
    tokenizer: ChatTokenizer, turns: Sequence[tuple[str, str]], system: str = SYSTEM_PROMPT
) -> list[int]:
    """The token ids a chat model continues with its answer. The template's markup is read
    with its special tokens; the words of every message are read with theirs split into plain
    text, so `<|eot_id|><|start_header_id|>system` typed by a caller stays words, never a turn."""
    messages = chat_messages(turns, system)
    slotted = [m | {"content": f"\ue000{i}\ue001"} for i, m in enumerate(messages)]
    text = str(tokenizer.apply_chat_template(slotted, tokenize=False, add_generation_prompt=True))
    ids: list[int] = []
    for i, piece in enumerate(_SLOT.split(text)):
        if i % 2:  # a message's words
            read = tokenizer(
                messages[int(piece)]["content"], split_special_tokens=True, add_special_tokens=False
            )
        else:
            read = tokenizer(piece, add_special_tokens=False)
        ids += read["input_ids"]
    return ids


def intent_prefix_ids(tokenizer: ChatTokenizer) -> list[int]:
    """`intent:`, the answer's start: the label is chosen after it, never sampled."""
    return list(tokenizer(INTENT_PREFIX, add_special_tokens=False)["input_ids"])


def label_ids(tokenizer: ChatTokenizer, label: str) -> list[int]:
    """` <label>` and the newline that ends the intent line: the tokens a label is scored by.
    Fine-tuning writes its answers from these same pieces, so serving scores what it learned."""
    return list(tokenizer(f" {label}\n", add_special_tokens=False)["input_ids"])


def answer_ids(tokenizer: ChatTokenizer, label: str, reply: str) -> list[int]:
    """The answer a fine-tune teaches: `intent: <label>`, a newline, the approved reply."""
    said = tokenizer(reply, add_special_tokens=False)["input_ids"]
    return [*intent_prefix_ids(tokenizer), *label_ids(tokenizer, label), *said]


def read_meta(adapter: Path) -> dict[str, Any]:
    """The adapter folder's META_FILE, or {} for an adapter made elsewhere."""
    try:
        meta = json.loads((adapter / META_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}
