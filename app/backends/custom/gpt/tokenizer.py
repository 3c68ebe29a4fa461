"""Byte-level BPE tokenizer trained with the `tokenizers` library, plus our special tokens."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

BOS = "<|bos|>"  # starts every sequence
SEP = "<|sep|>"  # ends the customer's message; the assistant's answer follows
EOS = "<|eos|>"  # ends the answer
PAD = "<|pad|>"  # fills batches in training
SPECIAL_TOKENS = (PAD, BOS, SEP, EOS)


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, label_tokens: Sequence[str] = ()
) -> Tokenizer:
    """Train a byte-level BPE tokenizer on texts.

    Each label in label_tokens becomes one whole token, so the model names an intent in a
    single prediction instead of spelling it piece by piece.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if label_tokens:
        tokenizer.add_tokens(list(label_tokens))
    return plain_specials(tokenizer)


def plain_specials(tokenizer: Tokenizer) -> Tokenizer:
    """Make a text's `<|eos|>` or `<|sep|>` plain text, never the special token: a customer
    cannot end the question early, or start the answer, by typing them. The special tokens
    are placed by id (`encode_prompt`, the training rows); label tokens still match."""
    tokenizer.encode_special_tokens = True
    return tokenizer


def special_id(tokenizer: Tokenizer, token: str) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise ValueError(f"tokenizer has no {token} token")
    return int(token_id)


def encode_prompt(tokenizer: Tokenizer, text: str) -> list[int]:
    """The tokens the model sees before it answers: <bos> text <sep> (the text's own
    special-token look-alikes are plain text: `plain_specials`)."""
    ids: list[int] = tokenizer.encode(text, add_special_tokens=False).ids
    return [special_id(tokenizer, BOS), *ids, special_id(tokenizer, SEP)]
