"""Decoding speed of our from-scratch GPT.

    python benchmarks/custom_decode.py [--tokens 200] [--runs 3] [--requests 32]

Prints, in one run:
1. single-stream tokens/s of our decoding loop against Hugging Face
   `GPT2LMHeadModel.generate` with the same layers, width, heads and vocabulary (random weights,
   greedy, the same prompt and length), and the ratio;
2. throughput through `CustomAdapter` (dynamic batching) at concurrency 1, 4 and 16 on the
   default checkpoint, and the ratio of c=16 to c=1.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from app.adapters.backends import load_adapter
from app.adapters.custom_options import DEFAULT_CHECKPOINT, CustomOptions
from app.adapters.protocol import Message, ModelSpec, SamplingParams, collect
from app.banking.intents import IntentSet
from app.gpt.checkpoint import load_checkpoint
from app.gpt.generate import Sampling, generate
from app.gpt.model import GPT, GPTConfig
from app.gpt.tokenizer import encode_prompt

PROMPT = "I still have not received my new card"
PROMPTS = [
    PROMPT,
    "I lost my card",
    "how do I change my PIN",
    "why was I charged a fee",
    "my transfer failed",
    "can I get a refund",
    "what is the exchange rate",
    "close my account",
]


def ours(config: GPTConfig, prompt: list[int], tokens: int) -> float:
    torch.manual_seed(0)
    model = GPT(config).eval()
    started = time.perf_counter()
    produced = sum(1 for _ in generate(model, prompt, Sampling(), max_new_tokens=tokens))
    assert produced == tokens
    return produced / (time.perf_counter() - started)


def hugging_face(config: GPTConfig, prompt: list[int], tokens: int) -> float:
    hf = GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.block_size,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
    )
    torch.manual_seed(0)
    gpt2: Any = GPT2LMHeadModel  # typed differently across transformers releases
    model = gpt2(hf)
    model.eval()
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        started = time.perf_counter()
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            pad_token_id=0,
        )
        elapsed = time.perf_counter() - started
    produced = int(out.shape[1]) - len(prompt)
    assert produced == tokens
    return produced / elapsed


async def adapter_throughput(folder: Path, concurrency: int, requests: int) -> float:
    """Completion tokens per second with `concurrency` requests in flight at all times."""
    spec = ModelSpec("custom", "custom", CustomOptions(checkpoint=folder, max_batch=16))
    adapter = await load_adapter(spec, IntentSet.load())
    queue = list(range(requests))
    tokens = 0

    async def client() -> None:
        nonlocal tokens
        while queue:
            i = queue.pop()
            params = SamplingParams(max_tokens=64, temperature=0.0)
            question = (Message("user", PROMPTS[i % len(PROMPTS)]),)
            completion = await collect(adapter.stream(question, params))
            tokens += completion.usage.completion_tokens  # after the await: no lost update

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await adapter.close()
    return tokens / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=48, help="per concurrency level")
    args = parser.parse_args()
    ckpt = load_checkpoint(args.checkpoint)
    config = ckpt.model.config
    prompt = encode_prompt(ckpt.tokenizer, PROMPT)
    print(
        f"model: {config.n_layer} layers x {config.n_embd} wide, {config.n_head} heads, "
        f"vocabulary {config.vocab_size}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"\n1. one stream, greedy, {len(prompt)}-token prompt, {args.tokens} new tokens "
        f"(median of {args.runs})"
    )
    rates: dict[str, list[float]] = {
        "ours (app.gpt.generate)": [],
        "HF GPT2LMHeadModel.generate": [],
    }
    for _ in range(args.runs):  # alternate, so drift on a noisy machine hits both alike
        rates["ours (app.gpt.generate)"].append(ours(config, prompt, args.tokens))
        rates["HF GPT2LMHeadModel.generate"].append(hugging_face(config, prompt, args.tokens))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    for name, rate in medians.items():
        print(f"   {name:<32}{rate:>8.0f} tokens/s")
    a, b = medians.values()
    print(f"   ratio ours / HF: {a / b:.2f}x")
    print(
        f"\n2. through CustomAdapter (dynamic batching), default checkpoint, {args.requests} "
        "requests of up to 64 tokens per level"
    )
    levels = {
        c: asyncio.run(adapter_throughput(args.checkpoint, c, args.requests)) for c in (1, 4, 16)
    }
    for c, rate in levels.items():
        print(f"   concurrency {c:>2}: {rate:>8.0f} tokens/s  ({rate / levels[1]:.2f}x c=1)")
    print(f"   ratio c=16 / c=1: {levels[16] / levels[1]:.2f}x")


if __name__ == "__main__":
    main()
