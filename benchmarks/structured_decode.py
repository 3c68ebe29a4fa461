"""What structured outputs and log-probabilities cost the custom model: milliseconds per output
token through `CustomAdapter` with no `response_format`, with JSON (`json_object`), with a JSON
schema, and with each token's log-probability and its 5 likeliest alternatives (`logprobs`),
side by side in one run (alternating rounds, medians), at concurrency 1 and 8; and the mask's
own cost per token (llguidance's bitmask and its step), measured alone.

    python -m benchmarks.structured_decode [--requests 16] [--rounds 3] [--checkpoint DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from app.backends.catalog import load_adapter
from app.backends.custom.adapter import CustomAdapter
from app.backends.custom.gpt.checkpoint import load_checkpoint
from app.backends.custom.gpt.constrain import JsonGrammar, tokenizer_for
from app.backends.custom.gpt.tokenizer import EOS, special_id
from app.backends.custom.options import DEFAULT_CHECKPOINT, CustomOptions
from app.backends.protocol import ModelSpec, ResponseFormat, SamplingParams
from app.banking.intents import IntentSet
from benchmarks.custom_decode import adapter_throughput, require_compiled

PROMPTS = (
    "I still have not received my new card",
    "my card payment was declined",
    "how do I top up by bank transfer",
    "someone took money from my account",
)
SCHEMA = {
    "type": "object",
    "properties": {
        "intent": {"type": "string"},
        "reply": {"type": "string"},
        "urgent": {"type": "boolean"},
        "steps": {"type": "array", "items": {"type": "string"}},
        "channel": {"enum": ["app", "phone", "branch"]},
    },
    "required": ["intent", "reply", "urgent", "steps", "channel"],
    "additionalProperties": False,
}
MAX_TOKENS = 256
ASKED: dict[str, SamplingParams] = {
    "text": SamplingParams(MAX_TOKENS, 0.0),
    "json_object": SamplingParams(MAX_TOKENS, 0.0, response_format=ResponseFormat()),
    "json_schema": SamplingParams(
        MAX_TOKENS, 0.0, response_format=ResponseFormat(SCHEMA, "card_answer")
    ),
    "text+logprobs": SamplingParams(MAX_TOKENS, 0.0, logprobs=5),
}


async def ms_per_token(
    adapter: CustomAdapter, params: SamplingParams, concurrency: int, requests: int
) -> float:
    """Wall milliseconds per completion token with `concurrency` requests in flight."""
    return 1000 / await adapter_throughput(adapter, concurrency, requests, params, PROMPTS)


def mask_cost_us(folder: Path, steps: int = 400) -> float:
    """Microseconds per token of the mask alone: its bitmask, as a tensor, and its step,
    over replies the schema's grammar walks with its first allowed token."""
    ckpt = load_checkpoint(folder)
    vocab = ckpt.model.config.vocab_size
    tokenizer = tokenizer_for(ckpt.tokenizer.to_str(), vocab, special_id(ckpt.tokenizer, EOS))
    grammar = JsonGrammar(tokenizer, SCHEMA)
    taken, started = 0, time.perf_counter()
    while taken < steps:
        mask = grammar.mask("card_arrival")
        for _ in range(MAX_TOKENS):
            allowed = mask.allowed().nonzero()
            if len(allowed) == 0 or int(allowed[-1]) == special_id(ckpt.tokenizer, EOS):
                break
            mask.take(int(allowed[-1]))  # the last allowed: long tokens, a long walk
            taken += 1
    return (time.perf_counter() - started) * 1e6 / taken


async def main(folder: Path, requests: int, rounds: int) -> None:
    spec = ModelSpec("custom", "custom", CustomOptions(checkpoint=folder, max_batch=16))
    adapter = await load_adapter(spec, IntentSet.load())
    assert isinstance(adapter, CustomAdapter)
    assert adapter.decoder is not None
    await asyncio.to_thread(require_compiled, adapter.decoder.stepper)  # the step served
    try:
        for params in ASKED.values():  # warm every path once
            await ms_per_token(adapter, params, 4, 4)
        figures: dict[tuple[str, int], list[float]] = {}
        for _ in range(rounds):
            for concurrency in (1, 8):
                for name, params in ASKED.items():
                    ms = await ms_per_token(adapter, params, concurrency, requests)
                    figures.setdefault((name, concurrency), []).append(ms)
    finally:
        await adapter.close()
    print(f"{'asked':<16}{'c=1 ms/token':>14}{'x text':>8}{'c=8 ms/token':>14}{'x text':>8}")
    for name in ASKED:
        row = f"{name:<16}"
        for concurrency in (1, 8):
            ms = statistics.median(figures[(name, concurrency)])
            text = statistics.median(figures[("text", concurrency)])
            row += f"{ms:>14.2f}{ms / text:>7.2f}x"
        print(row)
    print(f"the mask alone: {mask_cost_us(folder):.0f} µs a token (bitmask, tensor, step)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.checkpoint, args.requests, args.rounds))
