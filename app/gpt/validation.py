"""Held-out scores of a checkpoint in training: the intent, and the whole answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer

from app.banking.corpus import Example
from app.banking.intents import IntentSet
from app.gpt.dataset import ANSWER_PREFIX, encode_example, pad_batch
from app.gpt.model import GPT
from app.gpt.tokenizer import EOS, PAD, special_id


@dataclass(frozen=True)
class AnswerScores:
    intent: float  # share whose label is the most likely token right after `intent: `
    exact: float  # share whose whole answer (label, approved reply, end) greedy decoding gives


@torch.inference_mode()
def answer_scores(
    model: GPT,
    tokenizer: Tokenizer,
    intents: IntentSet,
    examples: Sequence[Example],
    batch_size: int = 64,
) -> AnswerScores:
    """Both scores from one teacher-forced pass: where every answer token is the most likely
    one given the tokens before it, greedy decoding reproduces the answer exactly."""
    if not examples:
        return AnswerScores(float("nan"), float("nan"))
    prefix = len(tokenizer.encode(ANSWER_PREFIX, add_special_tokens=False).ids)
    eos = special_id(tokenizer, EOS)
    was_training = model.training
    model.eval()
    intent_hits = exact_hits = 0
    for k in range(0, len(examples), batch_size):
        chunk = examples[k : k + batch_size]
        seqs = [encode_example(tokenizer, e, intents, model.config.block_size) for e in chunk]
        x, y = pad_batch(seqs, special_id(tokenizer, PAD))  # y[:, i] is the token after x[:, i]
        predicted = model(x).argmax(dim=-1)  # (B, T)
        for row, (e, seq) in enumerate(zip(chunk, seqs, strict=True)):
            answer = (
                len(tokenizer.encode(intents.answer(e.category), add_special_tokens=False).ids) + 1
            )  # + <eos>
            start = len(seq) - answer - 1  # where the answer's first token is predicted
            label = start + prefix
            intent_hits += bool(predicted[row, label] == y[row, label])
            exact_hits += bool(
                seq[-1] == eos
                and torch.equal(predicted[row, start : len(seq) - 1], y[row, start : len(seq) - 1])
            )
    model.train(was_training)
    return AnswerScores(intent_hits / len(examples), exact_hits / len(examples))
