"""Customer numbers that must not leave the bank: found, checked and masked before a prompt
goes to a cloud model.

Card numbers are Luhn-valid runs of 13-19 digits (spaces or dashes allowed between digits),
IBANs pass the ISO 13616 mod-97 check, and any other run of 8+ digits, or 12+ digits with
separators, is treated as an account number. Dates (8 digits with separators), amounts and
short references are left alone.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from app.errors import InvalidRequest

PiiKind = Literal["card", "iban", "account"]
Policy = Literal["redact", "block", "allow"]
PLACEHOLDERS: dict[PiiKind, str] = {"card": "[CARD]", "iban": "[IBAN]", "account": "[ACCOUNT]"}

# Country code, check digits, then 11-30 letters or digits: in groups of four with single
# spaces, or written together.
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b", re.IGNORECASE)
_DIGIT_RUN = re.compile(r"(?<!\d)\d(?:[ -]?\d)*(?!\d)")
_CONTIGUOUS_ACCOUNT_DIGITS = 8
_SEPARATED_ACCOUNT_DIGITS = 12


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


@dataclass(frozen=True)
class Redaction:
    text: str
    found: Counter[PiiKind]


def redact(text: str) -> Redaction:
    """The text with every customer number replaced by its placeholder, and what was found."""
    found: Counter[PiiKind] = Counter()

    def iban(match: re.Match[str]) -> str:
        if not iban_valid(match.group()):
            return match.group()
        found["iban"] += 1
        return PLACEHOLDERS["iban"]

    def digits(match: re.Match[str]) -> str:
        run = match.group()
        plain = re.sub(r"[ -]", "", run)
        kind: PiiKind | None = None
        if 13 <= len(plain) <= 19 and luhn_valid(plain):
            kind = "card"
        elif len(plain) >= (
            _CONTIGUOUS_ACCOUNT_DIGITS if plain == run else _SEPARATED_ACCOUNT_DIGITS
        ):
            kind = "account"
        if kind is None:
            return run
        found[kind] += 1
        return PLACEHOLDERS[kind]

    masked = _DIGIT_RUN.sub(digits, _IBAN.sub(iban, text))
    return Redaction(masked, found)


def blocked(found: Counter[PiiKind]) -> InvalidRequest:
    """The 422 for CLOUD_PII_POLICY=block: it names the kinds found, never the values."""
    kinds = ", ".join(sorted(found))
    return InvalidRequest(
        f"the prompt holds customer numbers ({kinds}); CLOUD_PII_POLICY=block keeps them from "
        "the cloud model: remove them, or ask an admin to switch to a local model",
        {"found": dict(sorted(found.items()))},
    )
