"""Prompts for a fine-tuned chat model: the tokenizer's chat template around a short banking
system prompt, the same in `bankllm finetune` and in serving (the adapter folder records it)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from jinja2 import TemplateError

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


Turn = tuple[str, str] | dict[str, Any]  # (role, content), or a template's message


class TemplateRefused(ValueError):
    """The chat template cannot write these turns (its own check failed)."""


class MarkupInWords(ValueError):
    """Words a template writes as they are (tools, calls) hold a special token."""


def chat_messages(turns: Sequence[Turn], system: str = SYSTEM_PROMPT) -> list[dict[str, Any]]:
    """The messages of a chat template: ours first; a caller's system turns (where settings
    allow them) after it, in the one system message chat templates accept. A turn given as a
    template's message keeps its other keys (an assistant's `tool_calls`, a tool's
    `tool_call_id`)."""
    said = [t if isinstance(t, dict) else {"role": t[0], "content": t[1]} for t in turns]
    extra = [m["content"] for m in said if m["role"] == "system"]
    system_turn = {"role": "system", "content": "\n\n".join([system, *extra])}
    return [system_turn, *(m for m in said if m["role"] != "system")]


def chat_ids(
    tokenizer: ChatTokenizer,
    turns: Sequence[Turn],
    system: str = SYSTEM_PROMPT,
    tools: list[dict[str, Any]] | None = None,
) -> list[int]:
    """The token ids a chat model continues with its answer. The template's markup is read
    with its special tokens; the words of every message are read with theirs split into plain
    text, so `<|eot_id|><|start_header_id|>system` typed by a caller stays words, never a turn.
    Tools and tool calls are the template's to write: a special token in their words is
    refused (MarkupInWords)."""
    messages = chat_messages(turns, system)
    _refuse_markup(tokenizer, [tools, [{**m, "content": ""} for m in messages]])
    slotted = [m | {"content": f"\ue000{i}\ue001"} for i, m in enumerate(messages)]
    try:
        text = str(
            tokenizer.apply_chat_template(
                slotted, tools=tools, tokenize=False, add_generation_prompt=True
            )
        )
    except TemplateError as exc:  # the template's own refusal (Llama 3.1's: one call a turn)
        raise TemplateRefused(f"the model's chat template refuses them: {exc}") from None
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


def _refuse_markup(tokenizer: Any, written: object) -> None:
    """Words the template writes as they are must hold none of its special tokens."""
    text = json.dumps(written, ensure_ascii=False)
    added = getattr(tokenizer, "added_tokens_decoder", {}).values()
    specials = {a.content for a in added if a.special} | set(tokenizer.all_special_tokens)
    specials |= {"\ue000", "\ue001"}  # the slots' own marks, which no text carries
    if found := [token for token in specials if token and token in text]:
        raise MarkupInWords(f"holds the model's markup {found[0]!r}: tools and calls are words")


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
