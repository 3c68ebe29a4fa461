from __future__ import annotations

from app.backends.custom.gpt.tokenizer import BOS, SEP, encode_prompt, special_id, train_tokenizer

TEXTS = ["where is my card", "my card is late", "cancel the transfer", "how much is the fee"] * 4


def test_labels_are_single_tokens_and_text_round_trips() -> None:
    tokenizer = train_tokenizer(TEXTS, 300, ["card_arrival", "reverted_card_payment?"])
    answer = "intent: reverted_card_payment?\nYour card payment was reversed. Café 5 €."
    encoded = tokenizer.encode(answer, add_special_tokens=False)
    assert "reverted_card_payment?" in encoded.tokens
    assert tokenizer.decode(encoded.ids) == answer


def test_prompt_is_framed_by_bos_and_sep() -> None:
    tokenizer = train_tokenizer(TEXTS, 300)
    ids = encode_prompt(tokenizer, "where is my card")
    assert ids[0] == special_id(tokenizer, BOS)
    assert ids[-1] == special_id(tokenizer, SEP)
    assert tokenizer.decode(ids[1:-1]) == "where is my card"
