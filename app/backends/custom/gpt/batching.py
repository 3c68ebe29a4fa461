"""Dynamic batching: concurrent sequences share one forward pass per decoding step.

Sequences that arrive together are prefilled together, in one forward pass, and join the
running batch at the next step. Each keeps its own sampling parameters and random generator,
and leaves the batch as soon as it ends or is cancelled; the last row then moves into its
place so the batch stays one dense block of rows. The passes themselves are `Stepper`'s.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from app.backends.custom.gpt.generate import Sampling, choose, sample
from app.backends.custom.gpt.model import GPT
from app.backends.custom.gpt.step import Stepper
from app.backends.grammar import TokenMask
from app.backends.token_scores import Scored, scored

logger = logging.getLogger(__name__)

# What a sequence receives, on the decoding thread: a token id, None when it has ended, or the
# exception that stopped the decoder.
Emit = Callable[[int | BaseException | None], None]
# The mask of a structured reply, given the token the sequence chose (None: it chose none)
MaskFor = Callable[[int | None], TokenMask]


@dataclass(eq=False)
class Row:
    """One sequence being decoded: a row of the running batch."""

    prompt: list[int]
    sampling: Sampling
    max_new_tokens: int
    emit: Emit
    end_token: int | None = None  # ends the sequence after it is emitted (end of sequence)
    choices: tuple[int, ...] = ()  # the first token is the most likely of these (`choose`)
    then: tuple[int, ...] = ()  # the tokens after the choice, as they are (never sampled)
    chosen_p: float | None = None  # the probability of that choice, set before it is emitted
    grammar: MaskFor | None = None  # what the reply after the choice must be (JSON of a schema)
    logprobs: int | None = None  # score each sampled token, with this many alternatives
    cancelled: bool = False  # set from any thread; the decoder drops the row at its next step
    generator: torch.Generator | None = field(init=False, default=None)
    last: int = field(init=False, default=-1)  # the token to feed at the next step
    pos: int = field(init=False, default=0)  # tokens in the cache
    budget: int = field(init=False, default=0)  # tokens it may still produce
    context: int = field(init=False, default=0)  # the model's block size
    following: list[int] = field(init=False, default_factory=list)  # `then`, still to come
    chosen: int | None = field(init=False, default=None)  # the token `choices` gave
    mask: TokenMask | None = field(init=False, default=None)  # the grammar, once the reply starts
    # each sampled token's (id, log-probability, alternatives), kept before it is emitted
    scores: list[Scored] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if self.sampling.seed is not None:
            self.generator = torch.Generator().manual_seed(self.sampling.seed)

    @property
    def finished(self) -> bool:
        return (
            self.cancelled
            or self.budget <= 0
            or self.last == self.end_token
            or self.pos + 1 >= self.context  # as `generate`: a full block takes no more
        )


_STOP = object()


class BatchDecoder:
    """Owns the model on one thread; `submit` from any thread.

    A step that raises ends the sequences of its batch with the error (their requests fail,
    nobody hangs); the thread is then replaced by a new one with fresh caches, which goes on
    with the sequences still waiting. A prefill that raises ends only the sequences it held."""

    def __init__(
        self,
        model: GPT,
        max_batch: int,
        name: str = "gpt",
        threads: int = 1,
        *,
        restart: frozenset[int] = frozenset(),
        compile: bool = False,
    ):
        self.model = model
        self.max_batch = max_batch
        self.threads = threads  # the cores it decodes on (its intra-op threads)
        self._restart = restart  # tokens after which a sequence goes on from that token alone
        self.stepper = Stepper(model, max_batch, compile=compile, threads=threads)
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
        self.stepper.close()
        self._pending.put(_STOP)
        joined = None
        while self._thread is not joined:  # a replacement started meanwhile gets the stop
            joined = self._thread
            joined.join()

    def _run(self) -> None:
        # Intra-op threads of this thread only (an OpenMP setting per calling thread). One is
        # fastest here: with two, this model decodes 2.3x slower at c=1 and 1.9x slower at
        # c=16 on 2 cores, as its thread team contends with the process's other threads.
        torch.set_num_threads(self.threads)
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
                self.stepper.reset()
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
        """Move waiting sequences into free rows (blocking while idle) and prefill them
        together; False once closed."""
        joining: list[Row] = []
        running = True
        while len(self._active) + len(joining) < self.max_batch:
            try:
                item = self._pending.get(block=not (self._active or joining))
            except queue.Empty:
                break
            if item is _STOP:
                running = False
                break
            assert isinstance(item, Row)
            item.budget = item.max_new_tokens
            item.context = self.model.config.block_size
            if item.cancelled or item.budget <= 0 or len(item.prompt) >= item.context:
                item.emit(None)
            else:
                joining.append(item)
        if joining:
            self._start(joining)
        return running

    def _start(self, joining: list[Row]) -> None:
        rows = list(range(len(self._active), len(self._active) + len(joining)))
        try:
            logits = self.stepper.prefill([seq.prompt for seq in joining], rows)
        except Exception as exc:  # theirs alone: the running batch has not seen them
            if len(joining) > 1:  # one at a time, so only the sequence at fault fails
                for seq in joining:
                    self._start([seq])
                return
            logger.exception("a prefill failed")
            joining[0].emit(exc)
            return
        for seq in joining:  # all in the batch first: should a first token fail, the
            seq.pos = len(seq.prompt)  # error reaches every one of them
            self._active.append(seq)
        for seq, row_logits in zip(joining, logits, strict=True):
            if seq.choices:
                seq.chosen, seq.chosen_p = choose(row_logits, seq.choices)
                seq.following = list(seq.then)
                self._produce(seq, seq.chosen)
            else:
                self._produce(seq, _scored_if_asked(seq, row_logits, _next_token(seq, row_logits)))

    def _step(self) -> None:
        """One forward pass for every running sequence, each at its own position."""
        self._retire()
        if not self._active:
            return
        positions = [s.pos for s in self._active]
        idx = torch.tensor([s.last for s in self._active])
        logits = self.stepper.step(idx, torch.tensor(positions), max(positions))  # (B, vocab)
        self.steps += 1
        self.rows += len(self._active)
        greedy = logits.argmax(dim=-1).tolist()  # one pass for every greedy row
        for row, seq in enumerate(self._active):
            seq.pos += 1
            if seq.following:
                self._produce(seq, seq.following.pop(0))
            elif seq.grammar is None and seq.sampling.temperature <= 0.0:
                self._produce(seq, _scored_if_asked(seq, logits[row], greedy[row]))
            else:
                self._produce(
                    seq, _scored_if_asked(seq, logits[row], _next_token(seq, logits[row]))
                )

    def _produce(self, seq: Row, token: int) -> None:
        seq.last = token
        seq.budget -= 1
        # the answer goes on from this token alone, at position 0; inside a structured reply
        # a label is only text
        if token in self._restart and seq.mask is None:
            seq.pos = 0
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
                self.stepper.move_row(row, len(self._active), last.pos)
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


def _scored_if_asked(seq: Row, logits: torch.Tensor, token: int) -> int:
    """The sampled token, scored on the row first when its caller asked for logprobs."""
    if seq.logprobs is not None:
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        seq.scores.append(scored(logprobs, token, seq.logprobs))
    return token


def _next_token(seq: Row, logits: torch.Tensor) -> int:
    """The row's next token from its logits (vocab,): sampled as it asks, among the tokens its
    grammar allows when it has one."""
    if seq.grammar is None:
        return sample(logits, seq.sampling, seq.generator)
    try:
        if seq.mask is None:
            seq.mask = seq.grammar(seq.chosen)
        allowed = seq.mask.allowed()
    except Exception as exc:  # this row's grammar failed, not the batch: only this row ends
        logger.exception("a structured reply's grammar failed")
        seq.emit(exc)
        seq.cancelled = True
        return seq.end_token if seq.end_token is not None else 0
    if seq.end_token is not None and not bool(allowed.any()):  # a grammar in error: it ends
        return seq.end_token
    token = sample(logits.masked_fill(~allowed, -torch.inf), seq.sampling, seq.generator)
    seq.mask.take(token)
    return token
