"""Byte-level BPE tokenizer trained with the `tokenizers` library, plus our special tokens."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

BOS = "<|bos|>"  # starts every sequence
SEP = "<|sep|>"  # ends the customer's message; the assistant's answer follows
EOS = "<|eos|>"  # ends the answer
PAD = "<|pad|>"  # fills batches in training
SPECIAL_TOKENS = (PAD, BOS, SEP, EOS)
# Ends an earlier user turn, the latest following: only a tokenizer trained for conversations
# has it, and only a checkpoint that has it is shown earlier turns.
TURN = "<|turn|>"
EARLIER_TURNS = 2  # earlier user turns a follow-up is read with, the latest of them


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    label_tokens: Sequence[str] = (),
    *,
    turns: bool = False,
) -> Tokenizer:
    """Train a byte-level BPE tokenizer on texts.

    Each label in label_tokens becomes one whole token, so the model names an intent in a
    single prediction instead of spelling it piece by piece. With `turns`, it has the token
    that ends an earlier user turn (a model trained on conversations).
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[*SPECIAL_TOKENS, *([TURN] if turns else [])],
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


def encode_prompt(
    tokenizer: Tokenizer,
    text: str,
    earlier: Sequence[str] = (),
    room: int | None = None,
    established: Sequence[str | None] = (),
) -> list[int]:
    """The tokens the model sees before it answers: <bos> [earlier [<label>] <turn>]... text
    <sep> (the texts' own special-token look-alikes are plain text: `plain_specials`). Earlier
    user turns are read only by a tokenizer trained with the turn token, at most
    `EARLIER_TURNS` of them, each followed by the label of the intent it was answered with
    where `established` knows it; the oldest go first when the prompt would pass `room`."""
    latest: list[int] = tokenizer.encode(text, add_special_tokens=False).ids
    turn: int | None = tokenizer.token_to_id(TURN)
    if established and len(established) != len(earlier):
        raise ValueError(f"{len(established)} established intents for {len(earlier)} turns")
    labels = established or [None] * len(earlier)
    read = list(zip(earlier, labels, strict=True))[-EARLIER_TURNS:] if turn is not None else []
    before: list[int] = []
    for past, label in reversed(read):
        said = tokenizer.encode(past, add_special_tokens=False).ids
        known = tokenizer.token_to_id(label) if label is not None else None
        more = [*said, *([known] if known is not None else []), special_id(tokenizer, TURN)]
        if room is not None and 2 + len(before) + len(more) + len(latest) > room:
            break
        before = more + before
    return [special_id(tokenizer, BOS), *before, *latest, special_id(tokenizer, SEP)]
