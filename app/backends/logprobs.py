"""The token log-probabilities a local engine gives (token ids and numbers) as the reply's:
each token's text and bytes, read through the grammar library's view of the tokenizer (it
knows every token's bytes, a part of a character included)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import llguidance

from app.backends.protocol import Alternative, TokenLogprob
from app.backends.token_scores import Scored

# a log-probability JSON can carry: a token a grammar masked out has -inf (vLLM's own server
# writes the same floor)
FLOOR = -9999.0


def spelling_of(tokenizer: Any, config: Any) -> llguidance.LLTokenizer:
    """The grammar library's view of a transformers tokenizer, over the model's vocabulary."""
    from llguidance.hf import from_tokenizer

    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return from_tokenizer(tokenizer, n_vocab=getattr(text, "vocab_size", None))


def token_logprobs(
    tokenizer: llguidance.LLTokenizer | None, scored: Iterable[Scored]
) -> tuple[TokenLogprob, ...]:
    """Each scored token with its text and bytes (none without a tokenizer: not loaded)."""
    if tokenizer is None:
        return ()
    return tuple(
        TokenLogprob(*_spelled(tokenizer, token), _finite(logprob), tuple(_others(tokenizer, top)))
        for token, logprob, top in scored
    )


def _others(
    tokenizer: llguidance.LLTokenizer, top: Iterable[tuple[int, float]]
) -> list[Alternative]:
    return [Alternative(*_spelled(tokenizer, token), _finite(logp)) for token, logp in top]


def _finite(logprob: float) -> float:
    return max(logprob, FLOOR)


def _spelled(tokenizer: llguidance.LLTokenizer, token: int) -> tuple[str, bytes]:
    """A token's text and bytes; a special token is markup, no text of the reply's: none."""
    if tokenizer.is_special_token(token):
        return "", b""
    raw = tokenizer.decode_bytes([token])
    return raw.decode("utf-8", errors="replace"), raw
