"""Customer numbers that must not leave the bank: found, checked and masked before a prompt
goes to a cloud model.

The text is read in a normal form first, so no spelling of a number slips past: every
Unicode decimal digit reads as its ASCII digit (full-width, Arabic-Indic, circled), and every
space, dash, dot, slash, control and invisible character reads as one kind of
separator. A run of digits with at most six separators between them is one number:

- a card when a run of its groups is a Luhn-valid 13-19 digits; the whole run is masked, and
  an expiry (MM/YY) or security code written near it, or after a keyword anywhere, too;
- an IBAN (letters and digits, any separators) when its country's length and the ISO 13616
  mod-97 check agree;
- otherwise an account when it has 8+ digits written together, or 12+ with separators.

Dates (8 digits with separators), amounts and short references are left alone.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from app.banking.iban_lengths import IBAN_LENGTHS
from app.errors import InvalidRequest

PiiKind = Literal["card", "iban", "account", "expiry", "cvv"]
Policy = Literal["redact", "block", "allow"]
PLACEHOLDERS: dict[PiiKind, str] = {
    "card": "[CARD]",
    "iban": "[IBAN]",
    "account": "[ACCOUNT]",
    "expiry": "[EXPIRY]",
    "cvv": "[CVV]",
}
_SEPARATOR_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Pd", "Mn", "Me"})
# marks between digits beside spaces and dashes (not commas: "1,250.00, 3,400.00" are amounts);
# the fraction and division slashes and the minus sign written as escapes, being look-alikes
_SEPARATOR_MARKS = frozenset("./\\_*·•∙‧~|\u2044\u2215\u2212")
_MAX_SEPARATORS = 6  # between two digits of one number: "4111 - 1111", a line break and indent
_GAP = f" {{0,{_MAX_SEPARATORS}}}"
_DIGIT_RUN = re.compile(rf"(?<!\d)\d(?:{_GAP}\d)*")
_IBAN_START = re.compile(rf"(?<![A-Za-z0-9])[A-Za-z]{_GAP}[A-Za-z](?:{_GAP}\d){{2}}")
_ALNUM = re.compile(r"[A-Za-z0-9]")
_EXPIRY = r"(?<!\d)(?:0?[1-9]|1[0-2]) {1,3}(?:20)?\d\d(?!\d)"
_NEAR_CARD = re.compile(rf"{_EXPIRY}|(?<!\d)\d{{3,4}}(?!\d)")
_NEAR_CARD_CHARS = 48  # how far before or after a card its expiry and code are looked for
_KEYWORD_CODE = re.compile(
    r"\b(?:cvv2?|cvc2?|csc|cid|security +code)\b[^0-9A-Za-z]{0,3}(?:is +)?(\d{3,4})(?!\d)",
    re.IGNORECASE,
)
_KEYWORD_EXPIRY = re.compile(
    rf"\b(?:exp(?:iry|ires|iration)?|valid +(?:thru|through|until))\b[^0-9A-Za-z]{{0,3}}"
    rf"(?:date +)?(?:is +)?({_EXPIRY})",
    re.IGNORECASE,
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """The mod-97 check of an IBAN written with or without separators."""
    compact = "".join(_ALNUM.findall(text)).upper()
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


@dataclass(frozen=True)
class Redaction:
    text: str
    found: Counter[PiiKind]


@dataclass(frozen=True)
class Redactions:
    """Several texts read as one (a conversation's turns and its stop strings, joined by line
    breaks, so a number split between two of them is still found), masked each in place."""

    texts: tuple[str, ...]
    found: Counter[PiiKind]


def redact(text: str) -> Redaction:
    """The text with every customer number replaced by its placeholder, and what was found."""
    joined = redact_all((text,))
    return Redaction(joined.texts[0], joined.found)


def redact_all(texts: Sequence[str]) -> Redactions:
    whole = "\n".join(texts)
    shape, origin = _shape(whole)
    spans, found = _find(shape)
    if not spans:
        return Redactions(tuple(texts), found)
    if origin is not None:  # back to the original text's positions
        spans = [(origin[s], origin[e - 1] + 1, kind) for s, e, kind in spans]
    masked: list[str] = []
    offset = 0
    for text in texts:
        end = offset + len(text)
        masked.append(_mask(text, offset, [sp for sp in spans if sp[0] < end and sp[1] > offset]))
        offset = end + 1
    return Redactions(tuple(masked), found)


def blocked(found: Counter[PiiKind]) -> InvalidRequest:
    """The 422 for CLOUD_PII_POLICY=block: it names the kinds found, never the values."""
    kinds = ", ".join(sorted(found))
    return InvalidRequest(
        f"the prompt holds customer numbers ({kinds}); CLOUD_PII_POLICY=block keeps them from "
        "the cloud model: remove them, or ask an admin to switch to a local model",
        {"found": dict(sorted(found.items()))},
    )


Span = tuple[int, int, PiiKind]


def _mask(text: str, offset: int, spans: list[Span]) -> str:
    """`text` (starting at `offset` of the joined texts) with each span's part replaced."""
    pieces: list[str] = []
    at = 0
    for start, end, kind in spans:
        start, end = max(start - offset, at), min(end - offset, len(text))
        if start >= end:
            continue
        pieces += [text[at:start], PLACEHOLDERS[kind]]
        at = end
    pieces.append(text[at:])
    return "".join(pieces)


def _shape(text: str) -> tuple[str, list[int] | None]:
    """The text as the patterns read it: digits ASCII, every separator a space; and, when
    that changed its length, the original position of each character (None: the same)."""
    if text.isascii():
        return text.translate(_ASCII_SHAPE), None
    chars: list[str] = []
    origin: list[int] = []
    for at, char in enumerate(text):
        digit = unicodedata.decimal(char, None)
        for read in str(digit) if digit is not None else unicodedata.normalize("NFKC", char):
            value = unicodedata.decimal(read, None)
            chars.append(str(value) if value is not None else " " if _separates(read) else read)
            origin.append(at)
    return "".join(chars), origin


def _separates(char: str) -> bool:
    return char in _SEPARATOR_MARKS or unicodedata.category(char) in _SEPARATOR_CATEGORIES


_ASCII_SHAPE = {c: " " for c in range(128) if _separates(chr(c))}
# Read for cards alone: any punctuation between groups of 3+ digits ("4111,1111,1111,1111",
# "4111;1111…"). Not for accounts, and not groups of 1-2 digits: "1,250.00, 3,400.00" are amounts.
_LOOSE_SHAPE = {ord(c): " " for c in ",;:+=#\"'()<>[]{}!?&%$@^`"}


def _find(shape: str) -> tuple[list[Span], Counter[PiiKind]]:
    """Every customer number's span in the shaped text, in order and not overlapping."""
    found: Counter[PiiKind] = Counter()
    spans = _ibans(shape)
    taken = [(s, e) for s, e, _ in spans]
    for match in _DIGIT_RUN.finditer(shape):
        if any(s < match.end() and match.start() < e for s, e in taken):
            continue
        number, cards = _number_kind(match.group())
        if number is None:
            continue
        spans.append((match.start(), match.end(), number))
        found[number] += cards or 1
        if number == "card":
            spans += _near_card(shape, match.start(), match.end())
    keyworded: tuple[tuple[re.Pattern[str], PiiKind], ...] = (
        (_KEYWORD_CODE, "cvv"),
        (_KEYWORD_EXPIRY, "expiry"),
    )
    for pattern, kind in keyworded:
        spans += [(m.start(1), m.end(1), kind) for m in pattern.finditer(shape)]
    for start, end, cards in _punctuated_cards(shape):
        if not any(s <= start and end <= e for s, e, _ in spans):  # not found already
            spans.append((start, end, "card"))
            found["card"] += cards
    spans = _disjoint(spans)
    found.update(kind for _, _, kind in spans if kind in ("iban", "expiry", "cvv"))
    return spans, found


def _punctuated_cards(shape: str) -> list[tuple[int, int, int]]:
    """Cards written with punctuation between groups of 3+ digits: (start, end, cards)."""
    found = []
    for match in _DIGIT_RUN.finditer(shape.translate(_LOOSE_SHAPE)):  # the same positions
        groups = match.group().split()
        if len(groups) > 1 and min(len(g) for g in groups) >= 3 and (cards := _cards(groups)):
            found.append((match.start(), match.end(), cards))
    return found


def _ibans(shape: str) -> list[Span]:
    spans: list[Span] = []
    for start in _IBAN_START.finditer(shape):
        letters = _ALNUM.findall(shape, start.start(), start.end())
        country = "".join(letters[:2]).upper()
        length = IBAN_LENGTHS.get(country)
        if length is None:
            continue
        chars = list(_ALNUM.finditer(shape, start.start(), start.start() + length * 7))[:length]
        if len(chars) < length or any(
            shape[a.end() : b.start()].strip() for a, b in itertools.pairwise(chars)
        ):
            continue  # something other than separators inside
        end = chars[-1].end()
        bban = "".join(c.group() for c in chars[4:])
        if _ALNUM.match(shape, end) or sum(c.isdigit() for c in bban) * 2 < len(bban):
            continue  # runs on into a word, or is mostly letters: words, not an IBAN
        if (end - start.start()) <= length * (_MAX_SEPARATORS + 1) and iban_valid(
            "".join(c.group() for c in chars)
        ):
            spans.append((start.start(), end, "iban"))
    return spans


def _number_kind(run: str) -> tuple[PiiKind | None, int]:
    """What a run of digits is, and how many cards are in it."""
    groups = run.split()
    cards = _cards(groups)
    if cards:
        return "card", cards
    digits = sum(len(g) for g in groups)
    if digits >= 12 or (len(groups) == 1 and digits >= 8):
        return "account", 0
    return None, 0


def _cards(groups: list[str]) -> int:
    """How many Luhn-valid 13-19 digit numbers the groups hold, each a run of whole groups."""
    count, first = 0, 0
    while first < len(groups):
        digits = ""
        for last in range(first, len(groups)):
            digits += groups[last]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_valid(digits):
                count, first = count + 1, last
                break
        first += 1
    return count


def _near_card(shape: str, start: int, end: int) -> list[Span]:
    """An expiry or a 3-4 digit code written just before or after a card."""
    spans: list[Span] = []
    for lo, hi in ((max(0, start - _NEAR_CARD_CHARS), start), (end, end + _NEAR_CARD_CHARS)):
        for match in _NEAR_CARD.finditer(shape, lo, hi):
            kind: PiiKind = "cvv" if match.group().isdigit() else "expiry"
            spans.append((match.start(), match.end(), kind))
    return spans


def _disjoint(spans: list[Span]) -> list[Span]:
    """Spans in order, those that overlap merged into one (the kind of the one that starts
    first, the longer first): a number is masked whole or not at all."""
    kept: list[Span] = []
    for start, end, kind in sorted(spans, key=lambda s: (s[0], -s[1])):
        if kept and start < kept[-1][1]:
            first = kept[-1]
            kept[-1] = (first[0], max(first[1], end), first[2])
        else:
            kept.append((start, end, kind))
    return kept
