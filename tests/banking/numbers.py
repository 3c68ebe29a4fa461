"""Hypothesis strategies for customer numbers written every way we can think of: valid cards
and IBANs, grouped any way, with any separators, in any digit script, split across texts."""

from __future__ import annotations

import string
import unicodedata

from hypothesis import strategies as st

from app.banking.iban_lengths import IBAN_LENGTHS
from app.banking.pii import luhn_valid

SEPARATORS = [
    " ", "-", ".", "/", "\\", "_", "\t", "\n", "\r\n", "\u00a0", "\u2007", "\u2009", "\u202f",
    "\u3000", "\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2212", "\ufe63", "\uff0d",
    "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u00b7", "\u2022", "*",
]  # fmt: skip
DIGIT_ZEROS = [0x30, 0xFF10, 0x0660, 0x06F0, 0x0966, 0x09E6, 0x0E50, 0x1D7CE, 0x1D7EC]
WORDS = ["my", "card", "is", "lost", "please", "pay", "to", "from", "the", "IBAN", "number", ""]
CARD_PREFIXES = ["4", "51", "55", "2221", "34", "37", "6011", "65", "3528", "62"]


@st.composite
def cards(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(CARD_PREFIXES))
    length = draw(st.integers(13, 19))
    size = length - 1 - len(prefix)
    body = prefix + draw(st.text("0123456789", min_size=size, max_size=size))
    check = next(d for d in "0123456789" if luhn_valid(body + d))
    return body + check


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country = draw(st.sampled_from(sorted(IBAN_LENGTHS)))
    letters = draw(st.integers(0, 4)) if country in ("GB", "NL", "IE", "BG", "MT") else 0
    bban = draw(st.text(string.ascii_uppercase, min_size=letters, max_size=letters))
    size = IBAN_LENGTHS[country] - 4 - letters
    bban += draw(st.text(string.digits, min_size=size, max_size=size))
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


def _separator() -> st.SearchStrategy[str]:
    joined = st.lists(st.sampled_from(SEPARATORS), min_size=1, max_size=3).map("".join)
    return joined.filter(lambda s: len(s) <= 6)


@st.composite
def written(draw: st.DrawFn, number: str) -> str:
    """`number` in groups of 1-6 characters with separators between, in one digit script, its
    letters in either case."""
    zero = draw(st.sampled_from(DIGIT_ZEROS))
    upper = draw(st.booleans())
    chars = [chr(zero + int(c)) if c.isdigit() else (c if upper else c.lower()) for c in number]
    pieces: list[str] = []
    at = 0
    while at < len(chars):
        size = draw(st.integers(1, 6))
        pieces.append("".join(chars[at : at + size]))
        at += size
        if at < len(chars):
            pieces.append(draw(_separator()) if draw(st.booleans()) else "")
    return "".join(pieces)


@st.composite
def conversations(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A number, and texts that hold it (perhaps split between two of them) among words."""
    number = draw(st.one_of(cards(), ibans()))
    text = written(number)
    shown = draw(text)
    before = " ".join(draw(st.lists(st.sampled_from(WORDS), max_size=4)))
    after = " ".join(draw(st.lists(st.sampled_from(WORDS), max_size=4)))
    whole = f"{before} {shown} {after}"
    cut = draw(st.integers(len(before) + 1, len(before) + 1 + len(shown)))
    split = draw(st.booleans())
    texts = [whole[:cut], whole[cut:]] if split else [whole]
    return number, texts


def digits_in(text: str) -> str:
    """Every decimal digit of `text`, in any script, as ASCII."""
    return "".join(str(d) for c in text if (d := unicodedata.decimal(c, None)) is not None)
