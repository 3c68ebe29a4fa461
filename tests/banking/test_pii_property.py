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
    # found once; a card may be named an IBAN when a word's last letters before it spell a
    # country and the digits pass its mod-97 check by chance: masked the same either way
    assert masked.found["card"] + masked.found["iban"] == 1, masked
    if not number.isdigit():
        assert masked.found["iban"] == 1, masked
