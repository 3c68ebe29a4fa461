"""What the custom model knows it doesn't know: its figures on data it was not trained on.

    python -m benchmarks.assistant --checkpoint DIR --data HELDOUT.csv [--limit N]
                                   [--samples 300] [--concurrency 16]

Prints, for one checkpoint (its calibrated `handoff_below` applied, if it has one):
1. on `--data` (a held-out `text,category` CSV, e.g. the checkpoint's `heldout.csv`): intent
   accuracy with a hand-off counted wrong, and the share handed off;
2. on the kept-aside fifth of our out-of-scope corpus (never trained on): the share handed off;
3. replies at temperature 1.0 (seeded, `--samples` of the questions): the share that are the
   approved reply of their intent word for word;
4. on our follow-up conversations (`app/evaluation/data/followups.json`): the last turn's intent
   read with the whole conversation, beside the last turn asked alone (the same for a model
   that reads the latest user turn only, as the custom model does today).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

from app.backends.catalog import load_adapter
from app.backends.custom.options import CustomOptions
from app.backends.protocol import Adapter, Message, ModelSpec, SamplingParams
from app.banking.corpus import read_csv
from app.banking.intents import OUT_OF_SCOPE, IntentSet
from app.banking.out_of_scope import out_of_scope_examples
from app.models.asking import ModelReply, ask_once

FOLLOWUPS = Path(__file__).resolve().parents[1] / "app" / "evaluation" / "data" / "followups.json"
GREEDY = SamplingParams(max_tokens=96, temperature=0.0)


async def _ask_all(
    adapter: Adapter,
    conversations: Sequence[tuple[Message, ...]],
    params: Sequence[SamplingParams],
    intents: IntentSet,
    concurrency: int,
) -> list[ModelReply]:
    slots = asyncio.Semaphore(concurrency)

    async def one(turns: tuple[Message, ...], p: SamplingParams) -> ModelReply:
        async with slots:
            return await ask_once(adapter, turns, p, intents, "block", 120.0)

    return await asyncio.gather(*(one(t, p) for t, p in zip(conversations, params, strict=True)))


def _choice(reply: ModelReply) -> str | None:
    return OUT_OF_SCOPE if reply.handoff else reply.intent


def _share(hits: int, total: int) -> str:
    return f"{hits / total:6.1%}  ({hits}/{total})" if total else "   n/a"


async def measure(args: argparse.Namespace) -> None:
    intents = IntentSet.load()
    spec = ModelSpec("custom", "custom", CustomOptions(checkpoint=args.checkpoint))
    adapter = await load_adapter(spec, intents)
    c = args.concurrency
    try:
        # a checkpoint's held-out split holds out-of-scope rows too: measured apart below
        banking = [e for e in read_csv(args.data) if e.category != OUT_OF_SCOPE][: args.limit]
        asked = [(Message("user", e.text),) for e in banking]
        answers = await _ask_all(adapter, asked, [GREEDY] * len(asked), intents, c)
        right = sum(_choice(a) == e.category for e, a in zip(banking, answers, strict=True))
        unthresholded = sum(a.named == e.category for e, a in zip(banking, answers, strict=True))
        handed = sum(a.handoff is not None for a in answers)
        away = out_of_scope_examples("held_out")
        away_answers = await _ask_all(
            adapter, [(Message("user", e.text),) for e in away], [GREEDY] * len(away), intents, c
        )
        away_handed = sum(a.handoff is not None for a in away_answers)
        sampled = asked[: args.samples]
        hot = [SamplingParams(max_tokens=96, temperature=1.0, seed=i) for i in range(len(sampled))]
        hot_answers = await _ask_all(adapter, sampled, hot, intents, c)
        named = [a for a in hot_answers if a.intent is not None]
        verbatim = sum(
            a.reply.strip() == intents.intents[a.intent].reply for a in named if a.intent
        )
        conversations = json.loads(FOLLOWUPS.read_text())
        whole = [tuple(Message(t["role"], t["content"]) for t in f["turns"]) for f in conversations]
        alone = [(Message("user", f["turns"][-1]["content"]),) for f in conversations]
        labels = [f["label"] for f in conversations]
        with_context = await _ask_all(adapter, whole, [GREEDY] * len(whole), intents, c)
        last_only = await _ask_all(adapter, alone, [GREEDY] * len(alone), intents, c)
    finally:
        await adapter.close()
    below = adapter.info.handoff_below
    print(f"checkpoint {args.checkpoint} (version {adapter.info.version}), hand-off below {below}")
    print(f"held-out banking questions ({args.data}):")
    print(f"  intent accuracy, no threshold               {_share(unthresholded, len(banking))}")
    print(f"  intent accuracy, a hand-off counted wrong   {_share(right, len(banking))}")
    print(f"  handed off                                  {_share(handed, len(banking))}")
    print("our out-of-scope messages, kept aside:")
    print(f"  handed off                                  {_share(away_handed, len(away))}")
    print("replies at temperature 1.0 (seeded):")
    print(f"  approved reply word for word                {_share(verbatim, len(named))}")
    print(f"follow-ups ({FOLLOWUPS.name}): the last turn's intent")
    hits = sum(_choice(a) == label for a, label in zip(with_context, labels, strict=True))
    print(f"  with the conversation                       {_share(hits, len(labels))}")
    hits = sum(_choice(a) == label for a, label in zip(last_only, labels, strict=True))
    print(f"  the last turn alone                         {_share(hits, len(labels))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="a held-out text,category CSV")
    parser.add_argument("--limit", type=int, help="only the first N rows of --data")
    parser.add_argument("--samples", type=int, default=300, help="questions asked at T=1.0")
    parser.add_argument("--concurrency", type=int, default=16)
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
