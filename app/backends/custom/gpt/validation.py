"""Held-out scores of a checkpoint in training: the intent, and the whole answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer

from app.backends.custom.gpt.dataset import ANSWER_PREFIX, encode_example, encode_reply, pad_batch
from app.backends.custom.gpt.model import GPT
from app.backends.custom.gpt.tokenizer import PAD, special_id
from app.banking.corpus import Example
from app.banking.intents import IntentSet


@dataclass(frozen=True)
class AnswerScores:
    intent: float  # share whose label is the most likely token right after `intent: `
    exact: float  # share whose whole answer (label, approved reply, end) greedy decoding gives
    # (the reply as a checkpoint with restart tokens decodes it: from the label alone)


@torch.inference_mode()
def answer_scores(
    model: GPT,
    tokenizer: Tokenizer,
    intents: IntentSet,
    examples: Sequence[Example],
    batch_size: int = 64,
) -> AnswerScores:
    """Both scores from teacher-forced passes, the questions up to their labels and each
    intent's reply from its label alone: where every answer token is the most likely one given
    the tokens before it, greedy decoding reproduces the answer exactly."""
    if not examples:
        return AnswerScores(float("nan"), float("nan"))
    prefix = len(tokenizer.encode(ANSWER_PREFIX, add_special_tokens=False).ids)
    pad = special_id(tokenizer, PAD)
    was_training = model.training
    model.eval()
    labels = sorted({e.category for e in examples})
    replies = [encode_reply(tokenizer, intents, label, model.config.block_size) for label in labels]
    x, y = pad_batch(replies, pad)  # y[:, i] is the token after x[:, i]
    predicted = model(x).argmax(dim=-1)
    reply_right = {
        label: torch.equal(predicted[row, : len(seq) - 1], y[row, : len(seq) - 1])
        for row, (label, seq) in enumerate(zip(labels, replies, strict=True))
    }
    intent_hits = exact_hits = 0
    for k in range(0, len(examples), batch_size):
        chunk = examples[k : k + batch_size]
        seqs = [encode_example(tokenizer, e, model.config.block_size) for e in chunk]
        x, y = pad_batch(seqs, pad)
        predicted = model(x).argmax(dim=-1)  # (B, T)
        for row, (e, seq) in enumerate(zip(chunk, seqs, strict=True)):
            label = len(seq) - 2  # where the label is predicted, after the prefix's tokens
            start = label - prefix
            intent_hits += bool(predicted[row, label] == y[row, label])
            exact_hits += reply_right[e.category] and torch.equal(
                predicted[row, start : label + 1], y[row, start : label + 1]
            )
    model.train(was_training)
    return AnswerScores(intent_hits / len(examples), exact_hits / len(examples))
