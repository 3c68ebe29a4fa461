"""`bankllm finetune`: QLoRA on a `text,category` CSV; the output folder is a QLORA_ADAPTER."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.backends.qlora.finetune import FinetuneConfig, finetune
from app.banking.intents import IntentSet
from app.cli.flags import config_from
from app.cli.training_data import add_data_flags, training_data


def add_parser(commands: Any) -> None:
    p: argparse.ArgumentParser = commands.add_parser(
        "finetune",
        help="train a LoRA adapter by QLoRA for the qlora model",
        description=(
            "QLoRA: load the base model in 4-bit NF4 (double quantization, bfloat16 compute), "
            "add LoRA to the named projections and train it to answer `intent: <label>` and "
            "the approved reply. Serve the output with QLORA_ADAPTER=OUT."
        ),
    )
    d = FinetuneConfig()
    p.add_argument("--base", required=True, help="the base model: a local folder or a hub id")
    add_data_flags(p)
    p.add_argument("--out", type=Path, required=True, help="the adapter folder to write")
    p.add_argument("--rank", type=int, default=d.rank, help="LoRA rank")
    p.add_argument("--alpha", type=int, default=d.alpha, help="LoRA alpha")
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument(
        "--targets",
        type=_names,
        default=d.targets,
        help="comma-separated module names that get LoRA (default: the attention projections)",
    )
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument(
        "--quantization",
        choices=("bitsandbytes", "none"),
        default=d.quantization,
        help="bitsandbytes: QLoRA's 4-bit base (default); none: a full-precision base",
    )
    p.add_argument("--val-fraction", type=float, default=d.val_fraction)
    p.add_argument("--eval-limit", type=int, default=d.eval_limit, help="validation examples")
    p.add_argument("--seed", type=int, default=d.seed)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    data = training_data(args)
    config = config_from(FinetuneConfig, args)
    print(f"fine-tuning {args.base} on {len(data.examples)} examples from {data.source}")
    report = finetune(
        args.base,
        data.examples,
        IntentSet.load(),
        args.out,
        config,
        conversations=data.conversations,
    )
    accuracy = "n/a" if report.val_accuracy is None else f"{report.val_accuracy:.1%}"
    print(
        f"saved {report.out}: {report.steps} steps on {report.train_examples} examples, "
        f"final loss {report.final_loss:.3f}, validation intent accuracy {accuracy} "
        f"({report.val_examples} held out). Serve it with QLORA_ADAPTER={report.out}"
    )
    return 0


def _names(text: str) -> tuple[str, ...]:
    """Comma-separated module names."""
    return tuple(name.strip() for name in text.split(",") if name.strip())
