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
from app.banking.followups import FollowUpConversation
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


def in_conversation(
    train_set: Sequence[Example],
    conversations: Sequence[FollowUpConversation],
    share: float,
    rng: random.Random,
) -> list[Example]:
    """Training examples read with earlier turns: each later turn of the conversations whose
    intents the training set has, as written and with the opening said another way (a training
    question of its intent); and `share` of the single questions after an unrelated question,
    their label unchanged, so that a latest turn clear alone decides. Each earlier turn's intent
    is shown with it three times in four: a conversation whose replies are not the approved ones
    tells none, and the model must read those too."""
    by_label: dict[str, list[Example]] = defaultdict(list)
    for e in train_set:
        by_label[e.category].append(e)
    examples: list[Example] = []
    for n, c in enumerate(conversations):
        if not set(c.intents) <= by_label.keys():
            continue
        for opening in (c.turns[0], rng.choice(by_label[c.intents[0]]).text):
            turns = (opening, *c.turns[1:])
            known = tuple(_shown(intent, rng) for intent in c.intents)
            examples += [
                Example(turns[k], c.intents[k], f"conversation {n}", turns[:k], known[:k])
                for k in range(1, len(turns))
            ]
    for e in rng.sample(list(train_set), round(len(train_set) * share)):
        if (other := rng.choice(train_set)).category != e.category:
            shown = (_shown(other.category, rng),)
            examples.append(Example(e.text, e.category, e.group, (other.text,), shown))
    return examples


def _shown(intent: str, rng: random.Random) -> str | None:
    return intent if rng.random() < 0.75 else None


def encode_example(tokenizer: Tokenizer, e: Example, block: int) -> list[int]:
    """<bos> text <sep> intent: <label>: the question and the answer up to its label. The
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
