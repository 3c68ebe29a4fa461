from __future__ import annotations

import threading

import torch

from app.gpt.batching import BatchDecoder, Row
from app.gpt.generate import Sampling, generate
from app.gpt.model import GPT, GPTConfig

CONFIG = GPTConfig(vocab_size=61, block_size=48, n_layer=2, n_head=2, n_embd=32)


class Collected:
    """The tokens a sequence received, and whether it has ended."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.ended = threading.Event()

    def __call__(self, item: int | BaseException | None) -> None:
        if isinstance(item, int):
            self.tokens.append(item)
        else:
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
