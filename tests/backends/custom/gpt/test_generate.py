from __future__ import annotations

import pytest
import torch

from app.backends.custom.gpt.generate import Sampling, generate, logits_to_probs, sample
from app.backends.custom.gpt.model import GPT, GPTConfig

CONFIG = GPTConfig(vocab_size=97, block_size=64, n_layer=2, n_head=2, n_embd=32)


def _model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(CONFIG).eval()


def test_cached_decoding_equals_uncached() -> None:
    model = _model()
    prompt = [1, 5, 9, 2]
    cached = list(generate(model, prompt, Sampling(), max_new_tokens=40))
    uncached = list(generate(model, prompt, Sampling(), max_new_tokens=40, use_cache=False))
    assert len(cached) == 40
    assert cached == uncached


def test_cached_logits_match_full_forward_at_every_step() -> None:
    model = _model(1)
    tokens = torch.randint(0, CONFIG.vocab_size, (20,))
    caches = model.new_cache()
    with torch.inference_mode():
        full = model(tokens.view(1, -1))[0]  # (T, vocab)
        prefix = model(tokens[:8].view(1, -1), torch.arange(8), caches)[0]
        steps = [
            model(tokens[i].view(1, 1), torch.tensor([i]), caches)[0, -1] for i in range(8, 20)
        ]
    torch.testing.assert_close(prefix, full[:8], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.stack(steps), full[8:], rtol=1e-4, atol=1e-5)


def test_prefill_after_cached_tokens_is_causal() -> None:
    model = _model(2)
    tokens = torch.randint(0, CONFIG.vocab_size, (12,))
    caches = model.new_cache()
    with torch.inference_mode():
        full = model(tokens.view(1, -1))[0]
        model(tokens[:5].view(1, -1), torch.arange(5), caches)
        rest = model(tokens[5:].view(1, -1), torch.arange(5, 12), caches)[0]
    torch.testing.assert_close(rest, full[5:], rtol=1e-4, atol=1e-5)


def test_same_seed_same_tokens_and_other_seed_differs() -> None:
    model = _model()
    sampling = Sampling(temperature=1.5, top_p=0.95, seed=7)
    first = list(generate(model, [3, 4], sampling, max_new_tokens=30))
    again = list(generate(model, [3, 4], sampling, max_new_tokens=30))
    other = list(generate(model, [3, 4], Sampling(1.5, 0.95, seed=8), max_new_tokens=30))
    assert first == again
    assert first != other


def test_generation_stops_at_the_end_of_the_context() -> None:
    model = _model()
    tokens = list(generate(model, list(range(60)), Sampling(), max_new_tokens=100))
    assert len(tokens) == CONFIG.block_size - 60


def test_top_p_keeps_the_smallest_set_reaching_the_mass() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    probs = logits_to_probs(logits, temperature=1.0, top_p=0.8)
    torch.testing.assert_close(probs, torch.tensor([0.625, 0.375, 0.0, 0.0]))


@pytest.mark.parametrize("top_p", [0.01, 6e-145, 5e-324])  # the last two are 0 in float32
def test_top_p_always_keeps_the_most_likely_token(top_p: float) -> None:
    logits = torch.tensor([4.0, 1.0, 0.0])
    probs = logits_to_probs(logits, temperature=1.0, top_p=top_p)
    torch.testing.assert_close(probs, torch.tensor([1.0, 0.0, 0.0]))
    assert sample(logits, Sampling(temperature=1.0, top_p=top_p), None) == 0


def test_temperature_zero_is_argmax() -> None:
    logits = torch.tensor([0.1, 2.0, 1.9])
    assert sample(logits, Sampling(temperature=0.0), None) == 1


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_numbers_multinomial_refuses_fall_back_to_the_most_likely_token(bad: float) -> None:
    """One row's NaN must not raise: in a batch, that would fail every request decoding."""
    logits = torch.tensor([0.0, 5.0, 1.0, bad])
    token = sample(logits, Sampling(temperature=0.7), torch.Generator().manual_seed(0))
    assert token == (3 if bad == float("inf") else 1)
