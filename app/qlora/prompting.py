"""Prompts for a fine-tuned chat model: the tokenizer's chat template around a short banking
system prompt, the same in `bankllm finetune` and in serving (the adapter folder records it)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

# The adapter learned the 77 labels in fine-tuning; the long intent list of the cloud prompt
# would only cost context here.
SYSTEM_PROMPT = (
    "You are the assistant of a retail bank. Answer with a first line `intent: <label>` naming "
    "the customer's intent, then a short, polite reply."
)
META_FILE = "bankllm.json"  # beside the adapter: how it was trained, and its system prompt


class ChatTokenizer(Protocol):
    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


def chat_prompt(
    tokenizer: ChatTokenizer, turns: Sequence[tuple[str, str]], system: str = SYSTEM_PROMPT
) -> str:
    """The text a chat model continues with its answer. `turns` are (role, content) pairs; a
    caller's system turns follow ours in the one system message chat templates accept."""
    extra = [content for role, content in turns if role == "system"]
    messages = [{"role": "system", "content": "\n\n".join([system, *extra])}]
    messages += [{"role": r, "content": c} for r, c in turns if r != "system"]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return str(text)


def read_meta(adapter: Path) -> dict[str, Any]:
    """The adapter folder's META_FILE, or {} for an adapter made elsewhere."""
    try:
        meta = json.loads((adapter / META_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}
