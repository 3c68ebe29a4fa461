"""Single-stream decode speed of a custom checkpoint: the bare decoding loop vs our adapter.

    python benchmarks/single_stream.py [--checkpoint DIR] [--tokens 200] [--runs 5]

Both run the same greedy answer, to its end of sequence, in one process, so their ratio is
the adapter's own cost (detokenizing, stop strings, one thread hop per token).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import torch

from app.backends.catalog import load_adapter
from app.backends.custom.gpt.checkpoint import load_checkpoint
from app.backends.custom.gpt.generate import Sampling, generate
from app.backends.custom.gpt.tokenizer import EOS, encode_prompt, special_id
from app.backends.custom.options import DEFAULT_CHECKPOINT, CustomOptions
from app.backends.protocol import Message, ModelSpec, SamplingParams, collect
from app.banking.intents import IntentSet

PROMPT = "I still have not received my new card"


def bare_loop(folder: Path, tokens: int) -> tuple[int, float]:
    ckpt = load_checkpoint(folder)
    ids = encode_prompt(ckpt.tokenizer, PROMPT)
    eos = special_id(ckpt.tokenizer, EOS)
    started = time.perf_counter()
    count = 0
    for token in generate(
        ckpt.model, ids, Sampling(), max_new_tokens=tokens, restart=ckpt.restart_tokens
    ):
        count += 1
        if token == eos:
            break
    return count, count / (time.perf_counter() - started)


async def through_adapter(folder: Path, tokens: int) -> tuple[int, float]:
    spec = ModelSpec("custom", "custom", CustomOptions(checkpoint=folder))
    adapter = await load_adapter(spec, IntentSet.load())
    params = SamplingParams(max_tokens=tokens, temperature=0)
    started = time.perf_counter()
    completion = await collect(adapter.stream((Message("user", PROMPT),), params))
    elapsed = time.perf_counter() - started
    await adapter.close()
    count = completion.usage.completion_tokens
    return count, count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    bare = [bare_loop(args.checkpoint, args.tokens) for _ in range(args.runs)]
    adapted = [asyncio.run(through_adapter(args.checkpoint, args.tokens)) for _ in range(args.runs)]
    b = statistics.median(rate for _, rate in bare)
    a = statistics.median(rate for _, rate in adapted)
    print(
        f"checkpoint {args.checkpoint}, torch threads {torch.get_num_threads()}, "
        f"greedy, one stream, answer of {bare[0][0]} tokens (until end of sequence)"
    )
    print(f"{'path':<22}{'tokens/s, median of ' + str(args.runs):>26}")
    print(f"{'bare decoding loop':<22}{b:>26.0f}")
    print(f"{'CustomAdapter':<22}{a:>26.0f}")
    print(f"adapter / bare: {a / b:.2f}")


if __name__ == "__main__":
    main()
