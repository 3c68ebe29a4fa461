"""The token log-probabilities a local engine gives (token ids and numbers) as the reply's:
each token's text and bytes, read through the grammar library's view of the tokenizer (it
knows every token's bytes, a part of a character included)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import llguidance

from app.backends.protocol import Alternative, TokenLogprob

# what an engine gives per token: its id, its log-probability, and the top alternatives'
Scored = tuple[int, float, tuple[tuple[int, float], ...]]


def spelling_of(tokenizer: Any, config: Any) -> llguidance.LLTokenizer:
    """The grammar library's view of a transformers tokenizer, over the model's vocabulary."""
    from llguidance.hf import from_tokenizer

    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return from_tokenizer(tokenizer, n_vocab=getattr(text, "vocab_size", None))


def token_logprobs(
    tokenizer: llguidance.LLTokenizer, scored: Iterable[Scored]
) -> tuple[TokenLogprob, ...]:
    """Each scored token with its text and bytes."""
    return tuple(
        TokenLogprob(*_spelled(tokenizer, token), logprob, tuple(_others(tokenizer, top)))
        for token, logprob, top in scored
    )


def _others(
    tokenizer: llguidance.LLTokenizer, top: Iterable[tuple[int, float]]
) -> list[Alternative]:
    return [Alternative(*_spelled(tokenizer, token), logprob) for token, logprob in top]


def _spelled(tokenizer: llguidance.LLTokenizer, token: int) -> tuple[str, bytes]:
    raw = tokenizer.decode_bytes([token])
    return raw.decode("utf-8", errors="replace"), raw
