from __future__ import annotations

from collections import Counter

import pytest

from app.banking.pii import blocked, iban_valid, luhn_valid, redact


@pytest.mark.parametrize(
    ("text", "masked", "found"),
    [
        ("card 4111 1111 1111 1111 lost", "card [CARD] lost", {"card": 1}),
        ("card 4111-1111-1111-1111.", "card [CARD].", {"card": 1}),
        ("4111111111111111", "[CARD]", {"card": 1}),
        ("amex 3782 822463 10005", "amex [CARD]", {"card": 1}),
        ("iban GB82 WEST 1234 5698 7654 32 please", "iban [IBAN] please", {"iban": 1}),
        ("to DE89370400440532013000", "to [IBAN]", {"iban": 1}),
        ("account 12345678", "account [ACCOUNT]", {"account": 1}),
        ("mistyped 4111 1111 1111 1112", "mistyped [ACCOUNT]", {"account": 1}),
        ("bad GB00 WEST 1234 5698 7654 32", "bad GB00 WEST [ACCOUNT]", {"account": 1}),
        ("ref12345678x", "ref[ACCOUNT]x", {"account": 1}),
        ("on 2024-01-15 I paid £1,250.00", "on 2024-01-15 I paid £1,250.00", {}),
        ("sort code 12-34-56, ref 1234567", "sort code 12-34-56, ref 1234567", {}),
        (
            "4111 1111 1111 1111 and 5500 0000 0000 0004 to GB82WEST12345698765432",
            "[CARD] and [CARD] to [IBAN]",
            {"card": 2, "iban": 1},
        ),
    ],
)
def test_redact_masks_customer_numbers_only(text: str, masked: str, found: dict[str, int]) -> None:
    redaction = redact(text)
    assert (redaction.text, redaction.found) == (masked, Counter(found))


def test_checksums() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32")
    assert not iban_valid("GB83 WEST 1234 5698 7654 32")
    assert not iban_valid("GB82 WEST")  # too short to be an IBAN


def test_blocked_names_the_kinds_never_the_values() -> None:
    error = blocked(Counter({"iban": 1, "card": 2}))
    assert error.body() == {
        "error": {
            "type": "invalid_request",
            "message": "the prompt holds customer numbers (card, iban); CLOUD_PII_POLICY=block "
            "keeps them from the cloud model: remove them, or ask an admin to switch to a "
            "local model",
            "details": {"found": {"card": 2, "iban": 1}},
        }
    }


@pytest.mark.parametrize("between", [",", ";", ":", "+", "=", "#", '"', ")(", "<>", ", ", "', '"])
def test_a_card_between_any_punctuation_is_found(between: str) -> None:
    redaction = redact(f"card {between.join(['4111', '1111', '1111', '1111'])} ok")
    assert (redaction.text, redaction.found) == ("card [CARD] ok", Counter({"card": 1}))


def test_amounts_with_commas_stay() -> None:
    text = "paid 1,250.00, 3,400.00 and 12.50; also 250,000"
    assert redact(text).text == text
