"""QLoRA fine-tuning: a 4-bit NF4 base, LoRA on its attention (and any named) projections, trained
to answer `intent: <label>` and the approved reply; validation accuracy at the end.

The output folder is what QLORA_ADAPTER serves: the peft adapter, the tokenizer with its chat
template, and bankllm.json (the system prompt, how it was trained, what it scored).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from app.backends.custom.gpt.dataset import split_stratified
from app.backends.qlora.hf_loading import load_base
from app.backends.qlora.prompting import META_FILE, SYSTEM_PROMPT, answer_ids, chat_ids
from app.banking.corpus import Example
from app.banking.followups import FollowUpConversation, in_conversation
from app.banking.intents import IntentSet, parse_intent_line

IGNORE = -100  # labels that the loss skips: the prompt's tokens


@dataclass(frozen=True)
class FinetuneConfig:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    epochs: int = 1
    max_steps: int | None = None  # stop early, e.g. for a smoke run
    batch_size: int = 8
    lr: float = 2e-4
    quantization: str = "bitsandbytes"  # or "none" (full-precision base, plain LoRA)
    val_fraction: float = 0.1
    eval_limit: int = 200  # validation examples answered at the end
    seed: int = 0


@dataclass(frozen=True)
class FinetuneReport:
    steps: int
    train_examples: int
    val_examples: int
    final_loss: float
    val_accuracy: float | None
    out: Path


def encode(tokenizer: Any, example: Example, intents: IntentSet) -> tuple[list[int], list[int]]:
    """(input ids, labels): the chat prompt (the customer's earlier turns, then the latest),
    then the answer and EOS, which alone is learned."""
    turns = [("user", text) for text in (*example.earlier, example.text)]
    prompt = chat_ids(tokenizer, turns)
    _, _, reply = intents.answer(example.category).partition("\n")
    target = [*answer_ids(tokenizer, example.category, reply), tokenizer.eos_token_id]
    return list(prompt) + target, [IGNORE] * len(prompt) + target


def _pad(rows: Sequence[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


def finetune(
    base_model: str,
    examples: Sequence[Example],
    intents: IntentSet,
    out: Path,
    config: FinetuneConfig = FinetuneConfig(),
    log: Callable[[str], None] = print,
    conversations: Sequence[FollowUpConversation] = (),
) -> FinetuneReport:
    """Fine-tune a LoRA adapter on examples (and, trained on alone, the later turns of
    `conversations` read with the turns before them); save it to out with its tokenizer and
    META_FILE."""
    from transformers import AutoTokenizer

    unknown = sorted({e.category for e in examples} - set(intents.answer_labels))
    if unknown:
        raise ValueError(f"labels not in the intent set: {', '.join(unknown[:5])}")
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = _with_lora(load_base(base_model, config.quantization), config)
    train_set, val_set = split_stratified(examples, config.val_fraction, config.seed)
    followups = in_conversation(train_set, conversations, 0.0, random.Random(config.seed))
    encoded = [encode(tokenizer, e, intents) for e in [*train_set, *followups]]
    steps, loss_value = _train(model, tokenizer.pad_token_id, encoded, config)
    accuracy = validate(model, tokenizer, val_set[: config.eval_limit], intents)
    if accuracy is not None:
        log(f"validation intent accuracy: {accuracy:.1%} on {min(len(val_set), config.eval_limit)}")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(out)
    weights = (out / "adapter_model.safetensors").read_bytes()
    meta = {
        "version": hashlib.sha256(weights).hexdigest()[:12],
        "base_model": base_model,
        "system_prompt": SYSTEM_PROMPT,
        "config": asdict(config),
        "steps": steps,
        "train_examples": len(train_set),
        "val_examples": len(val_set),
        "final_loss": round(loss_value, 4),
        "val_accuracy": accuracy,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return FinetuneReport(steps, len(train_set), len(val_set), loss_value, accuracy, out)


def _with_lora(model: Any, config: FinetuneConfig) -> Any:
    """The base model with LoRA on the named projections (prepared for k-bit training first)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.quantization == "bitsandbytes":
        prepare: Any = prepare_model_for_kbit_training  # untyped in peft
        model = prepare(model, use_gradient_checkpointing=False)
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.targets),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _train(
    model: Any, pad_id: int, encoded: list[tuple[list[int], list[int]]], config: FinetuneConfig
) -> tuple[int, float]:
    """The optimizer's steps over shuffled batches: how many, and the last loss."""
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=0.0
    )
    per_epoch = (len(encoded) + config.batch_size - 1) // config.batch_size
    total = per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    rng = random.Random(config.seed)
    model.train()
    step, loss_value = 0, float("nan")
    with tqdm(total=total, desc="finetune", unit="step") as bar:
        while step < total:
            order = list(range(len(encoded)))
            rng.shuffle(order)
            for start in range(0, len(order), config.batch_size):
                if step >= total:
                    break
                rows = [encoded[i] for i in order[start : start + config.batch_size]]
                ids = _pad([r[0] for r in rows], pad_id)
                labels = _pad([r[1] for r in rows], IGNORE)
                mask = _pad([[1] * len(r[0]) for r in rows], 0)
                loss = model(
                    input_ids=ids.to(model.device),
                    attention_mask=mask.to(model.device),
                    labels=labels.to(model.device),
                ).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step, loss_value = step + 1, float(loss.item())
                bar.set_postfix(loss=f"{loss_value:.3f}")
                bar.update()
    return step, loss_value


def validate(
    model: Any, tokenizer: Any, examples: Sequence[Example], intents: IntentSet
) -> float | None:
    """Share of examples whose greedy answer starts with the right `intent:` line."""
    if not examples:
        return None
    model.eval()
    right = 0
    with torch.inference_mode():
        for e in tqdm(examples, desc="validate", unit="example"):
            prompt = torch.tensor([chat_ids(tokenizer, [("user", e.text)])])
            output = model.generate(
                input_ids=prompt.to(model.device),
                attention_mask=torch.ones_like(prompt).to(model.device),
                max_new_tokens=16,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            text = tokenizer.decode(output[0, prompt.shape[1] :], skip_special_tokens=True)
            right += parse_intent_line(text.split("\n", 1)[0].strip(), intents)[1] == e.category
    return right / len(examples)
