"""Dynamic batching: concurrent sequences share one forward pass per decoding step.

A sequence joins the running batch at the next step (after its own prefill), keeps its own
sampling parameters and random generator, and leaves the batch as soon as it ends or is
cancelled; the last row then moves into its place so the batch stays one dense block of rows.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from app.gpt.generate import Sampling, prefill, sample
from app.gpt.model import GPT

logger = logging.getLogger(__name__)

# What a sequence receives, on the decoding thread: a token id, None when it has ended, or the
# exception that stopped the decoder.
Emit = Callable[[int | BaseException | None], None]


@dataclass(eq=False)
class Row:
    """One sequence being decoded: a row of the running batch."""

    prompt: list[int]
    sampling: Sampling
    max_new_tokens: int
    emit: Emit
    end_token: int | None = None  # ends the sequence after it is emitted (end of sequence)
    cancelled: bool = False  # set from any thread; the decoder drops the row at its next step
    generator: torch.Generator | None = field(init=False, default=None)
    last: int = field(init=False, default=-1)  # the token to feed at the next step
    pos: int = field(init=False, default=0)  # tokens in the cache
    budget: int = field(init=False, default=0)  # tokens it may still produce

    def __post_init__(self) -> None:
        if self.sampling.seed is not None:
            self.generator = torch.Generator().manual_seed(self.sampling.seed)

    @property
    def finished(self) -> bool:
        return self.cancelled or self.budget <= 0 or self.last == self.end_token


_STOP = object()


class BatchDecoder:
    """Owns the model on one thread; `submit` from any thread.

    A step that raises ends the sequences of its batch with the error (their requests fail,
    nobody hangs); the thread is then replaced by a new one with fresh caches, which goes on
    with the sequences still waiting. A prefill that raises ends only its own sequence."""

    def __init__(self, model: GPT, max_batch: int, name: str = "gpt", threads: int = 1):
        self.model = model
        self.max_batch = max_batch
        self._threads = threads
        self._caches = model.new_cache(max_batch)
        self._pending: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._active: list[Row] = []
        self.steps = 0  # batched decoding steps run
        self.rows = 0  # sequence-steps they served: rows / steps is the mean batch size
        self.replaced = 0  # threads replaced after a failed step
        self._dead: BaseException | None = None  # set when no thread can decode any more
        self._name = name
        self._thread = self._spawn()

    def _spawn(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name=f"decode-{self._name}", daemon=True)
        thread.start()
        return thread

    @property
    def batch_size(self) -> int:
        return len(self._active)

    def submit(self, sequence: Row) -> None:
        if self._dead is not None:
            sequence.emit(self._dead)
            return
        self._pending.put(sequence)
        if self._dead is not None:  # it died as this one was queued
            self._drain(self._dead)

    def close(self) -> None:
        """Stop the thread; sequences still running or waiting receive None."""
        self._pending.put(_STOP)
        joined = None
        while self._thread is not joined:  # a replacement started meanwhile gets the stop
            joined = self._thread
            joined.join()

    def _run(self) -> None:
        # Intra-op threads of this thread only (an OpenMP setting per calling thread). One is
        # fastest here: with two, this model decodes 2.3x slower at c=1 and 1.9x slower at
        # c=16 on 2 cores, as its thread team contends with the process's other threads.
        torch.set_num_threads(self._threads)
        try:
            with torch.inference_mode():
                while self._admit():
                    self._step()
                    self._retire()
        except Exception as exc:  # a bug, or a fault: end this batch, and decode on
            logger.exception("a decoding step failed: %d sequence(s) end", len(self._active))
            for seq in self._active:
                seq.emit(exc)
            self._active.clear()
            try:
                self._caches = self.model.new_cache(self.max_batch)
                self.replaced += 1
                self._thread = self._spawn()
            except BaseException as fatal:  # no new thread: nothing may wait for one
                self._end(fatal)
        except BaseException as exc:  # the thread itself is going: end every waiting request
            for seq in self._active:
                seq.emit(exc)
            self._active.clear()
            self._end(exc)
        else:
            for seq in self._active:
                seq.emit(None)
            self._active.clear()
            self._drain(None)

    def _end(self, error: BaseException) -> None:
        """No thread decodes any more: what waits, and whatever is submitted later, fails."""
        logger.exception("the decoding thread failed", exc_info=error)
        self._dead = error
        self._drain(error)

    def _admit(self) -> bool:
        """Move waiting sequences into free rows (blocking while idle); False once closed."""
        while len(self._active) < self.max_batch:
            try:
                item = self._pending.get(block=not self._active)
            except queue.Empty:
                return True
            if item is _STOP:
                return False
            assert isinstance(item, Row)
            self._start(item)
        return True

    def _start(self, seq: Row) -> None:
        seq.budget = min(seq.max_new_tokens, self.model.config.block_size - len(seq.prompt))
        if seq.cancelled or seq.budget <= 0:
            seq.emit(None)
            return
        try:
            single = self.model.new_cache(1)
            logits = prefill(self.model, torch.tensor(seq.prompt), single)
        except Exception as exc:  # this sequence's alone: the batch has not seen it
            logger.exception("a prefill failed")
            seq.emit(exc)
            return
        row = len(self._active)
        for batch_cache, own in zip(self._caches, single, strict=True):
            batch_cache.copy_row(row, own, 0, len(seq.prompt))
        seq.pos = len(seq.prompt)
        self._active.append(seq)
        self._produce(seq, sample(logits, seq.sampling, seq.generator))

    def _step(self) -> None:
        """One forward pass for every running sequence, each at its own position."""
        self._retire()
        if not self._active:
            return
        idx = torch.tensor([[s.last] for s in self._active])  # (B, 1)
        input_pos = torch.tensor([[s.pos] for s in self._active])  # (B, 1)
        logits = self.model(idx, input_pos, self._caches)[:, -1]  # (B, vocab)
        self.steps += 1
        self.rows += len(self._active)
        for row, seq in enumerate(self._active):
            seq.pos += 1
            self._produce(seq, sample(logits[row], seq.sampling, seq.generator))

    @staticmethod
    def _produce(seq: Row, token: int) -> None:
        seq.last = token
        seq.budget -= 1
        seq.emit(token)

    def _retire(self) -> None:
        """Drop finished rows; the last row takes each freed place."""
        row = 0
        while row < len(self._active):
            seq = self._active[row]
            if not seq.finished:
                row += 1
                continue
            last = self._active.pop()
            if last is not seq:
                for cache in self._caches:
                    cache.copy_row(row, cache, len(self._active), last.pos)
                self._active[row] = last
            seq.emit(None)

    def _drain(self, outcome: BaseException | None) -> None:
        while True:
            try:
                item = self._pending.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Row):
                item.emit(outcome)
