"""Decoding speed of our from-scratch GPT.

    python benchmarks/custom_decode.py [--tokens 200] [--runs 7] [--requests 48]

Prints, in one run:
1. single-stream tokens/s of our batch decoder with its compiled step against Hugging Face
   `GPT2LMHeadModel.generate` with the same layers, width, heads and vocabulary (random weights,
   greedy, the same prompt and length), and the ratio of the best runs and of the medians (on
   this shared machine the same step takes 0.4 to 1.6 ms from one moment to the next); the
   eager reference loop beside them;
2. throughput through `CustomAdapter` (dynamic batching, compiled step) at concurrency 1, 4
   and 16 on the default checkpoint, and the ratio of c=16 to c=1;
3. start-up: seconds from starting `bankllm serve` to its first answer, and to the compiled
   step taking over (it compiles in the background; the eager step answers until then).
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from app.backends.catalog import load_adapter
from app.backends.custom.adapter import CustomAdapter
from app.backends.custom.gpt.batching import BatchDecoder, Row
from app.backends.custom.gpt.checkpoint import load_checkpoint
from app.backends.custom.gpt.generate import Sampling, generate
from app.backends.custom.gpt.model import GPT, GPTConfig
from app.backends.custom.gpt.step import Stepper
from app.backends.custom.gpt.tokenizer import encode_prompt
from app.backends.custom.options import DEFAULT_CHECKPOINT, CustomOptions
from app.backends.protocol import Message, ModelSpec, SamplingParams, collect
from app.banking.intents import IntentSet

PROMPT = "I still have not received my new card"
GREEDY_64 = SamplingParams(max_tokens=64, temperature=0.0)
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


def reference(model: GPT, prompt: list[int], tokens: int) -> float:
    started = time.perf_counter()
    produced = sum(1 for _ in generate(model, prompt, Sampling(), max_new_tokens=tokens))
    assert produced == tokens
    return produced / (time.perf_counter() - started)


def compiled(decoder: BatchDecoder, prompt: list[int], tokens: int) -> float:
    """Tokens are collected on the decoding thread and handed over at the end, as
    `generate` hands over its tensor: a thread woken per token would measure the hand-off
    (streaming to the event loop is part 2's)."""
    produced: list[int] = []
    ended = threading.Event()

    def emit(token: int | BaseException | None) -> None:
        if isinstance(token, int):
            produced.append(token)
        else:
            ended.set()

    started = time.perf_counter()
    decoder.submit(Row(prompt, Sampling(), tokens, emit))
    assert ended.wait(300), "the decoder never ended the sequence"
    assert len(produced) == tokens
    return tokens / (time.perf_counter() - started)


def hugging_face_model(config: GPTConfig) -> Any:
    """GPT-2 with our model's shape and random weights, warmed up by one `generate`."""
    hf = GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.block_size,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        bos_token_id=None,  # no end of sequence: every run makes `tokens` tokens
        eos_token_id=None,
    )
    torch.manual_seed(0)
    gpt2: Any = GPT2LMHeadModel  # typed differently across transformers releases
    model = gpt2(hf)
    model.eval()
    hugging_face(model, [0, 1, 2], 8)
    return model


def hugging_face(model: Any, prompt: list[int], tokens: int) -> float:
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        started = time.perf_counter()
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=tokens,
            do_sample=False,
            pad_token_id=0,
        )
        elapsed = time.perf_counter() - started
    produced = int(out.shape[1]) - len(prompt)
    assert produced == tokens
    return produced / elapsed


async def adapter_throughput(
    adapter: CustomAdapter,
    concurrency: int,
    requests: int,
    params: SamplingParams = GREEDY_64,
    prompts: Sequence[str] = PROMPTS,
) -> float:
    """Completion tokens per second with `concurrency` requests in flight at all times."""
    queue = list(range(requests))
    tokens = 0

    async def client() -> None:
        nonlocal tokens
        while queue:
            i = queue.pop()
            question = (Message("user", prompts[i % len(prompts)]),)
            completion = await collect(adapter.stream(question, params))
            tokens += completion.usage.completion_tokens  # after the await: no lost update

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return tokens / (time.perf_counter() - started)


def require_compiled(stepper: Stepper, timeout_s: float = 300.0) -> None:
    """Wait for the compiled step; stop at once, with the compiler's reason, if it failed."""
    if not stepper.settled.wait(timeout_s):
        raise SystemExit(f"the decoding step did not compile within {timeout_s:.0f} s")
    if not stepper.compiled.is_set():
        raise SystemExit(f"compiling the decoding step failed: {stepper.compile_error}")


async def through_adapter(folder: Path, requests: int) -> tuple[dict[int, float], float]:
    spec = ModelSpec("custom", "custom", CustomOptions(checkpoint=folder, max_batch=16))
    adapter = await load_adapter(spec, IntentSet.load())
    assert isinstance(adapter, CustomAdapter)
    assert adapter.decoder is not None
    stepper = adapter.decoder.stepper
    await asyncio.to_thread(require_compiled, stepper)
    levels = {c: await adapter_throughput(adapter, c, requests) for c in (1, 4, 16)}
    await adapter.close()
    return levels, stepper.compile_seconds or float("nan")


def start_up(timeout_s: float = 180.0) -> tuple[float, float | None]:
    """Seconds from `bankllm serve` starting to its first answer, and to its compiled step."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "app.cli", "serve", "--port", "0"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()
    assert proc.stderr is not None
    stream = proc.stderr

    def read() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    url = answered = compiled_at = None
    try:
        while compiled_at is None and time.perf_counter() - started < timeout_s:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                continue
            if url is None and "Uvicorn running on " in line:
                url = line.split("Uvicorn running on ")[1].split()[0]
                reply = httpx.post(f"{url}/generate", json={"prompt": PROMPT}, timeout=60)
                reply.raise_for_status()
                answered = time.perf_counter() - started
            if "decoding step compiled" in line:
                compiled_at = time.perf_counter() - started
            if "compiling the decoding step failed" in line:
                raise SystemExit(f"the service could not compile its decoding step: {line}")
    finally:
        proc.terminate()
        proc.wait(30)
    assert answered is not None, "the service never answered"
    return answered, compiled_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--requests", type=int, default=48, help="per concurrency level")
    args = parser.parse_args()
    ckpt = load_checkpoint(args.checkpoint)
    config = ckpt.model.config
    prompt = encode_prompt(ckpt.tokenizer, PROMPT)
    print(
        f"model: {config.n_layer} layers x {config.n_embd} wide, {config.n_head} heads, "
        f"vocabulary {config.vocab_size}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads (the batch decoder: 1)"
    )
    torch.manual_seed(0)
    model = GPT(config).eval()  # random weights: no end of sequence cuts a run short
    decoder = BatchDecoder(model, max_batch=16, compile=True)
    require_compiled(decoder.stepper)
    hf = hugging_face_model(config)
    compiled(decoder, prompt, 8)  # both warm before the first timed run
    print(
        f"\n1. one stream, greedy, {len(prompt)}-token prompt, {args.tokens} new tokens "
        f"({args.runs} runs each, alternating; the step compiled in "
        f"{decoder.stepper.compile_seconds:.1f} s)"
    )
    names = ("ours: batch decoder, compiled step", "HF GPT2LMHeadModel.generate", "ours: eager")
    rates: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.runs):  # alternate, so drift on a noisy machine hits all alike
        rates[names[0]].append(compiled(decoder, prompt, args.tokens))
        rates[names[1]].append(hugging_face(hf, prompt, args.tokens))
        rates[names[2]].append(reference(model, prompt, args.tokens))
    decoder.close()
    best = {name: max(r) for name, r in rates.items()}
    medians = {name: statistics.median(r) for name, r in rates.items()}
    for name in names:
        print(f"   {name:<38}{best[name]:>8.0f} tokens/s best, {medians[name]:>6.0f} median")
    ratio, median_ratio = (f[names[0]] / f[names[1]] for f in (best, medians))
    print(f"   ratio compiled / HF: {ratio:.2f}x best of {args.runs}, {median_ratio:.2f}x median")
    print(
        f"\n2. through CustomAdapter (dynamic batching, compiled step), default checkpoint, "
        f"{args.requests} requests of up to 64 tokens per level"
    )
    levels, _ = asyncio.run(through_adapter(args.checkpoint, args.requests))
    for c, rate in levels.items():
        print(f"   concurrency {c:>2}: {rate:>8.0f} tokens/s  ({rate / levels[1]:.2f}x c=1)")
    print(f"   ratio c=16 / c=1: {levels[16] / levels[1]:.2f}x")
    answered, compiled_at = start_up()
    shown = "never" if compiled_at is None else f"{compiled_at:.1f} s"
    print(
        f"\n3. start-up of `bankllm serve`: first answer after {answered:.1f} s; "
        f"compiled step in use after {shown}"
    )


if __name__ == "__main__":
    main()
