"""Redaction's property: no card number or IBAN, however written or split, survives it."""

from __future__ import annotations

from hypothesis import given, settings

from app.banking.pii import redact_all
from tests.banking.numbers import conversations, digits_in


@settings(max_examples=1000, deadline=None)
@given(conversations())
def test_no_written_card_or_iban_survives(case: tuple[str, list[str]]) -> None:
    number, texts = case
    masked = redact_all(texts)
    assert digits_in("".join(masked.texts)) == ""  # the words around hold none
    assert masked.found["card" if number.isdigit() else "iban"] == 1, masked
