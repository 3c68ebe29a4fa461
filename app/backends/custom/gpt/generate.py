"""Decoding in named steps: prefill, decode_one_token, sample (after gpt-fast's generate.py)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from app.backends.custom.gpt.model import GPT, KVCache


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0  # 0 picks the most likely token (greedy)
    top_p: float = 1.0  # nucleus: sample from the smallest set whose mass reaches top_p
    seed: int | None = None  # same seed, same prompt, same model: same tokens


def logits_to_probs(logits: Tensor, temperature: float, top_p: float) -> Tensor:
    """Probabilities (vocab,) after temperature scaling and nucleus filtering."""
    probs = torch.softmax(logits / max(temperature, 1e-5), dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # drop a token when the mass before it already reaches top_p; the most likely one
        # always stays (a top_p too small for float32, 5e-324, compares as 0 and would drop it)
        drop = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= top_p
        drop[..., 0] = False
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
        probs = probs / probs.sum()
    return probs


def sample(logits: Tensor, sampling: Sampling, generator: torch.Generator | None) -> int:
    """Pick the next token id from the last position's logits (vocab,)."""
    if sampling.temperature <= 0.0:
        return int(torch.argmax(logits))
    probs = logits_to_probs(logits, sampling.temperature, sampling.top_p)
    if not bool(torch.isfinite(probs).all()) or not float(probs.sum()) > 0:
        # numbers multinomial refuses (a NaN, say) would fail every request of the batch
        # this row decodes in: this one takes the most likely token the logits still name
        return int(torch.argmax(torch.nan_to_num(logits, nan=-torch.inf)))
    return int(torch.multinomial(probs, 1, generator=generator))


def choose(logits: Tensor, choices: Sequence[int]) -> tuple[int, float]:
    """The most likely of `choices` (token ids) and the probability the model gives it among
    them: a decision, the same at any temperature (the intent label, never sampled)."""
    probs = torch.softmax(logits[list(choices)].float(), dim=-1)
    best = int(torch.argmax(probs))
    return choices[best], float(probs[best])


def prefill(model: GPT, prompt: Tensor, caches: list[KVCache]) -> Tensor:
    """Run the prompt (T,) through the model, filling the caches; logits (vocab,) of its end."""
    input_pos = torch.arange(prompt.numel())
    logits: Tensor = model(prompt.view(1, -1), input_pos, caches)
    return logits[0, -1]


def decode_one_token(model: GPT, token: int, pos: int, caches: list[KVCache]) -> Tensor:
    """Append one token at position pos; logits (vocab,) for the token after it."""
    idx = torch.tensor([[token]])
    logits: Tensor = model(idx, torch.tensor([pos]), caches)
    return logits[0, -1]


def forward_uncached(model: GPT, tokens: list[int]) -> Tensor:
    """Logits (vocab,) after tokens, recomputing attention over the whole sequence."""
    logits: Tensor = model(torch.tensor([tokens]))
    return logits[0, -1]


@torch.inference_mode()
def _next_logits(model: GPT, tokens: list[int], caches: list[KVCache] | None, fresh: int) -> Tensor:
    if caches is None:
        return forward_uncached(model, tokens)
    if fresh > 1:
        return prefill(model, torch.tensor(tokens), caches)
    return decode_one_token(model, tokens[-1], len(tokens) - 1, caches)


def generate(
    model: GPT,
    prompt: list[int],
    sampling: Sampling,
    *,
    max_new_tokens: int,
    use_cache: bool = True,
    restart: Collection[int] = frozenset(),
    choices: Sequence[int] = (),
    then: Sequence[int] = (),
) -> Iterator[int]:
    """Yield new token ids one at a time, up to max_new_tokens or the end of the context.

    A token in `restart` starts the context again: the sequence goes on from that token alone,
    at position 0 (a checkpoint trained to decode its reply from the intent label alone). With
    `choices`, the first token is the most likely of them, whatever the sampling (`choose`),
    and `then` follows it as it is.
    The caller stops early (end of sequence, stop string, cancellation) by not asking for more.
    Each step may run on any thread, one step at a time, which lets an async server interleave
    requests token by token. This loop is the reference the batch decoder is held equal to.
    """
    if not prompt:
        raise ValueError("prompt must hold at least one token")
    generator = torch.Generator().manual_seed(sampling.seed) if sampling.seed is not None else None
    caches = model.new_cache() if use_cache else None
    tokens = list(prompt)
    fresh = len(tokens)
    for step in range(max_new_tokens):
        if len(tokens) >= model.config.block_size:
            return
        logits = _next_logits(model, tokens, caches, fresh)
        if choices and step == 0:
            token, _ = choose(logits, choices)
        elif choices and step <= len(then):
            token = then[step - 1]
        else:
            token = sample(logits, sampling, generator)
        tokens = [token] if token in restart else [*tokens, token]
        fresh = 1
        yield token
