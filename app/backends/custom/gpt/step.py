"""The batch decoder's forward passes: a batched prefill, and one decoding step over static KV
caches, compiled by `torch.compile` in the background and run eagerly until it is ready.

The caches hold `rows` sequences of up to block_size positions each (gpt-fast's static cache),
so a step's shapes change only with the number of rows and the longest position: one compiled
graph, with both sizes symbolic, serves every step. The eager step is `GPT.forward` itself,
the reference that the compiled one is held equal to.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import cast

import torch
import torch._dynamo.config as dynamo_config
import torch.fx.experimental._config as fx_config
from torch import Tensor

from app.backends.custom.gpt import kernels
from app.backends.custom.gpt.model import GPT, Block, KVCache

logger = logging.getLogger(__name__)
# `static_step` is one function for every model a process loads, and the compiler keeps two
# graphs of it for each model shape (a lone row, the rest) up to its limit of recompiles (8):
# the budget is raised to that many shapes, past which a model decodes eagerly.
SHAPES_COMPILED = 32
GRAPHS_PER_SHAPE = 2
CLOSE_WAIT_S = 300.0  # how long closing waits for a compile under way (it cannot be cut short)

StepFn = Callable[[GPT, list[KVCache], Tensor, Tensor, int], Tensor]


def eager_step(model: GPT, caches: list[KVCache], idx: Tensor, pos: Tensor, length: int) -> Tensor:
    """Logits (B, vocab) for tokens idx (B,) at positions pos (B,) of cache rows 0..B-1."""
    logits: Tensor = model(idx.view(-1, 1), pos.view(-1, 1), caches)
    return logits[:, -1]


def static_step(model: GPT, caches: list[KVCache], idx: Tensor, pos: Tensor, length: int) -> Tensor:
    """`eager_step` over the first `length` positions of every row, written for the compiler:
    no data-dependent sizes, the row's own positions masked in (gpt-fast's decode step).

    Attention is spelled out (scores, masked softmax, weighted values) rather than
    `scaled_dot_product_attention`: with one query a row, the compiler fuses it into a few
    loops, where the CPU kernel of SDPA (built for long queries) cost a step more than its
    matrix products (554 µs against 1,262 µs a step at one row, this machine)."""
    c = model.config
    B, hs = idx.size(0), c.n_embd // c.n_head
    rows = torch.arange(B)
    hidden = (torch.arange(length) > pos.unsqueeze(1)).view(B, 1, 1, length)
    x = model.wte(idx) + model.wpe(pos)  # (B, C)
    for layer, cache in zip(model.h, caches, strict=True):
        block = cast(Block, layer)
        attn = block.attn
        q, k, v = attn.c_attn(block.ln_1(x)).split(c.n_embd, dim=1)
        cache.k[rows, :, pos] = k.view(B, c.n_head, hs)
        cache.v[rows, :, pos] = v.view(B, c.n_head, hs)
        scores = q.view(B, c.n_head, 1, hs) @ cache.k[:B, :, :length].transpose(-2, -1)
        weights = (scores * hs**-0.5).masked_fill(hidden, float("-inf")).softmax(dim=-1)
        y = weights @ cache.v[:B, :, :length]  # (B, nh, 1, hs)
        x = x + attn.c_proj(y.view(B, c.n_embd))
        x = x + block.mlp(block.ln_2(x))
    return model.lm_head(model.ln_f(x))  # type: ignore[no-any-return]


class Stepper:
    """Static caches of `rows` sequences and the forward passes over them.

    With `compile`, a background thread compiles `static_step`, checks it against the eager
    step on scratch caches, and only then takes it into use; until then, if compiling fails or
    disagrees, or once a compiled step has failed, every step runs eagerly. Callers see the
    same tokens either way (up to float rounding: a near-tie may fall either side)."""

    def __init__(self, model: GPT, rows: int, *, compile: bool = False, threads: int = 1):
        self.model = model
        self.rows = rows
        self._threads = threads  # the decoding thread's: compiled code guards on the count
        self._closed = threading.Event()
        self.caches = self._new_caches(max(2, rows))  # at least two rows: see `_compile`
        self._scratch = self._new_caches(rows)  # prefill writes here, then rows are copied
        self._fn: StepFn = eager_step
        self.compiled = threading.Event()  # set once steps run compiled
        self.settled = threading.Event()  # set once compiling ended, compiled or not
        self.compile_seconds: float | None = None
        self.compile_error: str | None = None  # why steps stay eager, when compiling failed
        self._compiler: threading.Thread | None = None
        self._kernels = kernels.kernel_folder()
        if compile:
            kernels.use(self._kernels)
            self._compiler = threading.Thread(target=self._compile, name="compile-step")
            self._compiler.start()
        else:
            self.settled.set()

    def step(self, idx: Tensor, pos: Tensor, longest: int) -> Tensor:
        """One token for each of rows 0..B-1, at its own position (`longest` the largest of
        them, which the caller knows without reading the tensor); logits (B, vocab)."""
        length = max(2, longest + 1)  # never 1: the compiler specializes sizes 0 and 1
        return self._fn(self.model, self.caches, idx, pos, length)

    def prefill(self, prompts: list[list[int]], rows: list[int]) -> Tensor:
        """Run the prompts in one forward pass and place each in its row of the caches;
        logits (len(prompts), vocab) of each prompt's last token."""
        width = max(map(len, prompts))
        idx = torch.zeros(len(prompts), width, dtype=torch.long)  # right-padded: causal
        for i, prompt in enumerate(prompts):  # attention never lets a token see the padding
            idx[i, : len(prompt)] = torch.tensor(prompt)
        logits = self.model(idx, torch.arange(width), self._scratch)  # (n, width, vocab)
        for i, (prompt, row) in enumerate(zip(prompts, rows, strict=True)):
            for cache, scratch in zip(self.caches, self._scratch, strict=True):
                cache.copy_row(row, scratch, i, len(prompt))
        ends = torch.tensor([len(p) - 1 for p in prompts])
        return logits[torch.arange(len(prompts)), ends]  # type: ignore[no-any-return]

    def move_row(self, dst: int, src: int, length: int) -> None:
        for cache in self.caches:
            cache.copy_row(dst, cache, src, length)

    def reset(self) -> None:
        """Fresh caches, after a failed step left them in an unknown state; and the eager
        step from then on, should the failed one have been compiled."""
        if self._fn is not eager_step:
            logger.warning("a compiled decoding step failed: decoding goes on eagerly")
            self._fn = eager_step
            self.compiled.clear()
        self.caches = self._new_caches(max(2, self.rows))

    def close(self) -> None:
        """A compile under way is not taken into use, and is waited for: a process must not
        exit while the compiler's own threads run (it aborts)."""
        self._closed.set()
        if self._compiler is not None:
            self._compiler.join(CLOSE_WAIT_S)
            if self._compiler.is_alive():
                logger.error("the decoding step still compiles after %.0f s", CLOSE_WAIT_S)

    def _new_caches(self, rows: int) -> list[KVCache]:
        """Caches made in inference mode wherever they are made: the compiled step's guards
        tell inference tensors from others, and would compile again for the other kind."""
        with torch.inference_mode():
            return self.model.new_cache(rows)

    def _compile(self) -> None:
        torch.set_num_threads(self._threads)
        limit = GRAPHS_PER_SHAPE * SHAPES_COMPILED
        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, limit)
        started = time.perf_counter()
        try:
            compiled = kernels.compile_in(self._kernels, self._compiled_and_checked, self._closed)
        except Exception as exc:
            self.compile_error = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
            logger.exception(
                "compiling the decoding step failed: it stays eager (%s)", self.compile_error
            )
            self.settled.set()
            return
        if compiled is not None and not self._closed.is_set():
            self.compile_seconds = time.perf_counter() - started
            self._fn = compiled
            self.compiled.set()
            logger.info("decoding step compiled in %.1f s", self.compile_seconds)
        self.settled.set()

    def _compiled_and_checked(self) -> StepFn | None:
        """The compiled step, once it agrees with the eager one; None if closed meanwhile."""
        compiled: StepFn = torch.compile(static_step, dynamic=True, fullgraph=True)
        # Sizes that happen to be equal while tracing (rows and cache rows, say) would be
        # assumed equal for good, and compile again on the decoding thread when not.
        with torch.inference_mode(), fx_config.patch(use_duck_shape=False):  # type: ignore[attr-defined]
            # one graph for a lone row (the compiler specializes size 1), one for the rest
            for rows, length in ((1, 4), (2, 3), (min(3, max(2, self.rows)), 5)):
                if self._closed.is_set():
                    return None
                self._agrees(compiled, rows, length)
        return compiled

    def _agrees(self, compiled: StepFn, rows: int, length: int) -> None:
        """Run both steps on the same scratch caches; raise where their tokens differ."""
        c = self.model.config
        generator = torch.Generator().manual_seed(length)
        idx = torch.randint(0, c.vocab_size, (rows,), generator=generator)
        pos = torch.full((rows,), length - 1)
        pos[0] = 0  # rows at different positions
        caches = self._new_caches(max(2, self.rows))  # the shape of the real ones
        for cache in caches:
            cache.k.normal_(generator=generator)
            cache.v.normal_(generator=generator)
        copies = self._new_caches(max(2, self.rows))
        for copy, cache in zip(copies, caches, strict=True):
            copy.k.copy_(cache.k)
            copy.v.copy_(cache.v)
        expected = eager_step(self.model, copies, idx, pos, length)
        got = compiled(self.model, caches, idx, pos, length)
        if not torch.allclose(expected, got, rtol=1e-4, atol=1e-4) or not torch.equal(
            expected.argmax(-1), got.argmax(-1)
        ):
            diff = float((expected - got).abs().max())
            raise RuntimeError(f"the compiled step differs from the eager one by up to {diff}")
