from __future__ import annotations

import threading
from typing import Any

import torch

from app.backends.custom.gpt.batching import BatchDecoder, Row
from app.backends.custom.gpt.generate import Sampling, generate
from app.backends.custom.gpt.model import GPT, GPTConfig

CONFIG = GPTConfig(vocab_size=61, block_size=48, n_layer=2, n_head=2, n_embd=32)


class Collected:
    """The tokens a sequence received, and whether it has ended."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.error: BaseException | None = None
        self.ended = threading.Event()

    def __call__(self, item: int | BaseException | None) -> None:
        if isinstance(item, int):
            self.tokens.append(item)
        else:
            self.error = item
            self.ended.set()

    def wait(self) -> list[int]:
        assert self.ended.wait(30), "the sequence never ended"
        return self.tokens


def _model() -> GPT:
    torch.manual_seed(0)
    return GPT(CONFIG).eval()


def _alone(model: GPT, prompt: list[int], sampling: Sampling, n: int) -> list[int]:
    return list(generate(model, prompt, sampling, max_new_tokens=n))


def test_batched_greedy_and_seeded_decoding_equal_single_decoding() -> None:
    model = _model()
    decoder = BatchDecoder(model, max_batch=8)
    cases = [
        ([1, 2, 3], Sampling(), 20),
        ([4] * 9, Sampling(), 35),
        ([7, 8], Sampling(), 5),
        ([9, 10, 11, 12], Sampling(1.0, 0.9, seed=3), 25),
        ([5], Sampling(0.7, seed=4), 30),
    ]
    outputs = [Collected() for _ in cases]
    for (prompt, sampling, n), out in zip(cases, outputs, strict=True):
        decoder.submit(Row(prompt, sampling, n, out))
    results = [out.wait() for out in outputs]
    decoder.close()
    assert results == [_alone(model, p, s, n) for p, s, n in cases]
    assert decoder.rows / decoder.steps > 1  # they did share forward passes


def test_a_cancelled_sequence_leaves_and_the_others_go_on() -> None:
    model = _model()
    decoder = BatchDecoder(model, max_batch=4)
    stays, leaves = Collected(), Collected()
    leaving = Row([3, 4], Sampling(), 40, leaves)

    def cancel_after_three(item: int | BaseException | None) -> None:
        leaves(item)
        if len(leaves.tokens) == 3:
            leaving.cancelled = True

    leaving.emit = cancel_after_three
    decoder.submit(leaving)
    decoder.submit(Row([1, 2], Sampling(), 30, stays))
    assert len(leaves.wait()) <= 4  # at most the step already under way
    assert stays.wait() == _alone(model, [1, 2], Sampling(), 30)
    decoder.close()


def test_a_sequence_ends_on_its_end_token_and_at_the_context() -> None:
    model = _model()
    free = _alone(model, [1, 2, 3], Sampling(), 10)
    decoder = BatchDecoder(model, max_batch=2)
    stopped, long = Collected(), Collected()
    decoder.submit(Row([1, 2, 3], Sampling(), 10, stopped, end_token=free[4]))
    decoder.submit(Row([5] * 40, Sampling(), 100, long))
    assert stopped.wait() == free[: free.index(free[4]) + 1]
    assert len(long.wait()) == CONFIG.block_size - 40
    decoder.close()


def test_more_sequences_than_rows_wait_their_turn() -> None:
    model = _model()
    decoder = BatchDecoder(model, max_batch=2)
    outputs = [Collected() for _ in range(5)]
    for i, out in enumerate(outputs):
        decoder.submit(Row([i + 1], Sampling(), 12, out))
    assert [out.wait() for out in outputs] == [
        _alone(model, [i + 1], Sampling(), 12) for i in range(5)
    ]
    assert decoder.rows / decoder.steps <= 2
    decoder.close()


def test_close_ends_every_sequence() -> None:
    decoder = BatchDecoder(_model(), max_batch=1)
    first, waiting = Collected(), Collected()
    decoder.submit(Row([1], Sampling(), 10_000, first))
    decoder.submit(Row([2], Sampling(), 10, waiting))
    decoder.close()
    assert first.ended.is_set()
    assert waiting.ended.is_set()


def _faulty(model: GPT, fails: Any) -> None:
    """Make the model's forward raise whenever `fails(idx)` says so (a fault injected into the
    real model: the decoder's own code runs as it would)."""
    forward = model.forward

    def faulty(idx: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if fails(idx):
            raise RuntimeError("injected fault")
        return forward(idx, *args, **kwargs)

    model.forward = faulty  # type: ignore[method-assign]


def test_a_step_that_raises_ends_its_batch_and_a_new_thread_decodes_on() -> None:
    model = _model()
    failed = threading.Event()

    def first_batch_of_two(idx: torch.Tensor) -> bool:
        if idx.shape == (2, 1) and not failed.is_set():
            failed.set()
            return True
        return False

    _faulty(model, first_batch_of_two)
    decoder = BatchDecoder(model, max_batch=4)
    first, second, after = Collected(), Collected(), Collected()
    decoder.submit(Row([1, 2], Sampling(), 40, first))
    decoder.submit(Row([3, 4], Sampling(), 40, second))
    first.wait(), second.wait()
    decoder.submit(Row([5, 6], Sampling(), 30, after))
    tokens = after.wait()
    decoder.close()
    assert [repr(c.error) for c in (first, second)] == [repr(RuntimeError("injected fault"))] * 2
    assert (after.error, decoder.replaced) == (None, 1)
    assert tokens == _alone(model, [5, 6], Sampling(), 30)  # fresh caches: the same tokens


def test_a_prefill_that_raises_ends_only_its_own_sequence() -> None:
    model = _model()
    _faulty(model, lambda idx: bool((idx == 60).any()))
    decoder = BatchDecoder(model, max_batch=4)
    bad, good, held = Collected(), Collected(), Collected()
    holding, release = threading.Event(), threading.Event()

    def hold(item: int | BaseException | None) -> None:  # runs on the decoding thread
        holding.set()
        release.wait(30)
        held(item)

    decoder.submit(Row([3], Sampling(), 1, hold))
    assert holding.wait(30)  # the thread waits: the next two arrive together
    decoder.submit(Row([1, 2], Sampling(), 30, good))
    decoder.submit(Row([60, 60], Sampling(), 30, bad))
    release.set()
    assert (bad.wait(), repr(bad.error)) == ([], repr(RuntimeError("injected fault")))
    assert (good.wait(), good.error) == (_alone(model, [1, 2], Sampling(), 30), None)
    decoder.close()
    assert decoder.replaced == 0


def test_a_decoder_that_cannot_replace_its_thread_fails_every_request_at_once() -> None:
    model = _model()
    _faulty(model, lambda idx: idx.shape == (1, 1))  # every decoding step
    decoder = BatchDecoder(model, max_batch=2)
    new_cache = model.new_cache

    def no_room_for_a_batch(batch: int) -> Any:
        if batch > 1:  # the replacement's caches
            raise MemoryError("no room")
        return new_cache(batch)

    model.new_cache = no_room_for_a_batch  # type: ignore[method-assign,assignment]
    first, later = Collected(), Collected()
    decoder.submit(Row([1, 2], Sampling(), 10, first))
    first.wait()
    decoder.submit(Row([3, 4], Sampling(), 10, later))
    assert later.wait() == []
    assert (repr(first.error), repr(later.error)) == (
        repr(RuntimeError("injected fault")),
        repr(MemoryError("no room")),
    )


def test_a_first_token_chosen_from_choices_is_the_same_at_any_temperature() -> None:
    model = _model()
    decoder = BatchDecoder(model, max_batch=4)
    choices = (40, 41, 42, 43)
    samplings = [Sampling(), Sampling(1.0, seed=1), Sampling(2.0, seed=2), Sampling(1.5, 0.5, 3)]
    outputs = [Collected() for _ in samplings]
    pairs = zip(samplings, outputs, strict=True)
    rows = [Row([1, 2, 3], s, 6, out, choices=choices, then=(7,)) for s, out in pairs]
    for row in rows:
        decoder.submit(row)
    results = [out.wait() for out in outputs]
    decoder.close()
    with torch.no_grad():
        logits = model(torch.tensor([[1, 2, 3]]))[0, -1]
    expected = torch.softmax(logits[list(choices)], dim=-1)
    first = choices[int(expected.argmax())]
    assert {(r[0], r[1]) for r in results} == {(first, 7)}  # the choice, then `then` as is
    assert {row.chosen_p for row in rows} == {float(expected.max())}
    # the rest is sampled as asked, and the reference loop decides the same way
    assert results == [
        list(generate(model, [1, 2, 3], s, max_new_tokens=6, choices=choices, then=(7,)))
        for s in samplings
    ]
