"""Training data for the GPT: held-out splits, encoded sequences, padded batches."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

import torch
from tokenizers import Tokenizer
from torch import Tensor

from app.backends.custom.gpt.tokenizer import EOS, encode_prompt, special_id
from app.banking.corpus import Example
from app.banking.intents import IntentSet

ANSWER_PREFIX = "intent: "


def split_stratified(
    examples: Sequence[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """(train, validation): about `fraction` of each category held out (at least one group when
    it has two or more). Examples of one group, variants of one phrasing, stay on one side."""
    by_label: dict[str, dict[str, list[Example]]] = defaultdict(lambda: defaultdict(list))
    for e in examples:
        by_label[e.category][e.group or e.text].append(e)
    rng = random.Random(seed)
    train: list[Example] = []
    val: list[Example] = []
    for label in sorted(by_label):
        groups = [by_label[label][key] for key in sorted(by_label[label])]
        rng.shuffle(groups)
        n_val = 0 if fraction <= 0 or len(groups) < 2 else max(1, round(len(groups) * fraction))
        val += [e for group in groups[:n_val] for e in group]
        train += [e for group in groups[n_val:] for e in group]
    return train, val


def encode_example(tokenizer: Tokenizer, e: Example, block: int) -> list[int]:
    """<bos> [earlier turns] text <sep> intent: <label>: the question and the answer up to its
    label. The
    reply is trained apart, from the label alone (`encode_reply`), so it is learnt once per
    intent instead of once per example, and decoded the same whatever the question."""
    answer = [*tokenizer.encode(ANSWER_PREFIX, add_special_tokens=False).ids]
    answer.append(special_id(tokenizer, e.category))  # each label is one added token
    prompt = encode_prompt(tokenizer, e.text, e.earlier, block - len(answer), e.established)
    if len(prompt) + len(answer) > block:  # cut the customer's text, keeping <sep>
        prompt = [*prompt[: max(1, block - len(answer) - 1)], prompt[-1]]
    return [*prompt, *answer]


def encode_reply(tokenizer: Tokenizer, intents: IntentSet, label: str, block: int) -> list[int]:
    """<label> \n reply <eos>: the answer from its label on, the sequence a checkpoint with
    restart tokens decodes at positions 0, 1, ... once it has named the intent (cut to the
    block size, which must then be raised for the reply to be learnt whole)."""
    answer = tokenizer.encode(intents.answer(label), add_special_tokens=False).ids
    start = answer.index(special_id(tokenizer, label))
    return [*answer[start:], special_id(tokenizer, EOS)][:block]


def batches(seqs: list[list[int]], size: int, rng: random.Random) -> list[list[list[int]]]:
    """Length-bucketed batches (little padding), in random order."""
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i]), rng.random()))
    batches = [[seqs[i] for i in order[k : k + size]] for k in range(0, len(order), size)]
    rng.shuffle(batches)
    return batches


def pad_batch(batch: list[list[int]], pad: int, sep: int | None = None) -> tuple[Tensor, Tensor]:
    """Inputs and next-token targets, padded. With `sep`, a sequence holding it is trained on
    its answer only: the customer's own tokens are context, not targets."""
    width = max(map(len, batch))
    x = torch.full((len(batch), width - 1), pad)
    y = torch.full((len(batch), width - 1), -100)  # -100: ignored by cross_entropy
    for row, seq in enumerate(batch):
        x[row, : len(seq) - 1] = torch.tensor(seq[:-1])
        y[row, : len(seq) - 1] = torch.tensor(seq[1:])
        if sep is not None and sep in seq:
            y[row, : seq.index(sep)] = -100
    return x, y
