from __future__ import annotations

import threading
from typing import Any

import torch
from torch._dynamo.utils import counters

from app.backends.custom.gpt.batching import BatchDecoder, Row
from app.backends.custom.gpt.generate import Sampling, generate
from app.backends.custom.gpt.model import GPT, GPTConfig
from tests.backends.custom.gpt.test_batching import Collected

CONFIG = GPTConfig(vocab_size=61, block_size=48, n_layer=2, n_head=2, n_embd=32)
CASES = [  # greedy and seeded rows, prompts of different lengths: rows at different positions
    ([1, 2, 3], Sampling(), 20),
    ([4] * 9, Sampling(), 35),
    ([7, 8], Sampling(), 5),
    ([9, 10, 11, 12], Sampling(1.0, 0.9, seed=3), 25),
    ([5], Sampling(0.7, seed=4), 30),
]


def _model() -> GPT:
    torch.manual_seed(0)
    return GPT(CONFIG).eval()


def _decode(decoder: BatchDecoder, cases: list[tuple[list[int], Sampling, int]]) -> list[list[int]]:
    outputs = [Collected() for _ in cases]
    for (prompt, sampling, n), out in zip(cases, outputs, strict=True):
        decoder.submit(Row(prompt, sampling, n, out))
    return [out.wait() for out in outputs]


def test_the_compiled_step_decodes_the_tokens_of_the_eager_reference() -> None:
    model = _model()
    decoder = BatchDecoder(model, max_batch=8, compile=True)
    assert decoder.stepper.compiled.wait(300), "the step never compiled"
    graphs = counters["stats"]["unique_graphs"]
    together = _decode(decoder, CASES)
    alone = [_decode(decoder, [case])[0] for case in CASES]
    decoder.close()
    assert counters["stats"]["unique_graphs"] == graphs  # no compile on the decoding thread
    cached = [list(generate(model, p, s, max_new_tokens=n)) for p, s, n in CASES]
    uncached = [list(generate(model, p, s, max_new_tokens=n, use_cache=False)) for p, s, n in CASES]
    assert together == alone == cached == uncached
    assert decoder.stepper.compile_seconds is not None


def test_after_a_restart_token_a_sequence_goes_on_from_that_token_alone() -> None:
    torch.manual_seed(8)
    model = GPT(CONFIG).eval()
    free = list(generate(model, [9, 10, 11, 12], Sampling(), max_new_tokens=30))
    assert free[:4] == [12, 12, 12, 11]  # 11 first comes fourth: a restart mid-answer
    restart = frozenset({11})
    tokens = list(generate(model, [9, 10, 11, 12], Sampling(), max_new_tokens=30, restart=restart))
    after = list(generate(model, [11], Sampling(), max_new_tokens=26, restart=restart))
    assert tokens[:4] == free[:4]
    assert tokens[4:] == after != free[4:]  # what came before the restart no longer counts
    uncached = generate(
        model, [9, 10, 11, 12], Sampling(), max_new_tokens=30, use_cache=False, restart=restart
    )
    assert list(uncached) == tokens
    other = ([4] * 9, Sampling(), 35)  # a row at another position all along
    expected = [tokens, list(generate(model, [4] * 9, Sampling(), max_new_tokens=35))]
    for compile in (False, True):
        decoder = BatchDecoder(model, max_batch=4, restart=restart, compile=compile)
        assert not compile or decoder.stepper.compiled.wait(300)
        batched = _decode(decoder, [([9, 10, 11, 12], Sampling(), 30), other])
        decoder.close()
        assert batched == expected, f"compile={compile}"


def test_sequences_that_arrive_together_are_prefilled_in_one_pass() -> None:
    model = _model()
    prefills: list[tuple[int, ...]] = []
    forward = model.forward

    def counted(idx: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if idx.size(1) > 1:
            prefills.append(tuple(idx.shape))
        return forward(idx, *args, **kwargs)

    model.forward = counted  # type: ignore[method-assign]
    decoder = BatchDecoder(model, max_batch=8)
    held, holding, release = Collected(), threading.Event(), threading.Event()

    def hold(item: int | BaseException | None) -> None:  # runs on the decoding thread
        holding.set()
        release.wait(30)
        held(item)

    decoder.submit(Row([1, 2], Sampling(), 3, hold))
    assert holding.wait(30)  # the thread waits in the first sequence's first token
    later = CASES[:3] + CASES[4:]
    outputs = [Collected() for _ in later]
    for (prompt, sampling, n), out in zip(later, outputs, strict=True):
        decoder.submit(Row(prompt, sampling, n, out))
    release.set()
    results = [out.wait() for out in outputs]
    held.wait()
    decoder.close()
    assert prefills == [(1, 2), (4, 9)]  # the first alone, the four that waited in one pass
    assert results == [list(generate(model, p, s, max_new_tokens=n)) for p, s, n in later]


def test_a_first_token_that_fails_ends_every_sequence_prefilled_with_it() -> None:
    decoder = BatchDecoder(_model(), max_batch=4)
    held, holding, release = Collected(), threading.Event(), threading.Event()

    def hold(item: int | BaseException | None) -> None:  # runs on the decoding thread
        holding.set()
        release.wait(30)
        held(item)

    def refuse(item: int | BaseException | None) -> None:
        if isinstance(item, int):
            raise RuntimeError("the request's own fault")
        failing(item)

    decoder.submit(Row([1, 2], Sampling(), 3, hold))
    assert holding.wait(30)
    failing, after = Collected(), Collected()
    decoder.submit(Row([3, 4], Sampling(), 10, refuse))
    decoder.submit(Row([5, 6], Sampling(), 10, after))  # prefilled with the failing one
    release.set()
    after.wait(), failing.wait(), held.wait()
    decoder.close()
    errors = [repr(c.error) for c in (held, failing, after)]
    assert errors == [repr(RuntimeError("the request's own fault"))] * 3
    assert decoder.replaced == 1
