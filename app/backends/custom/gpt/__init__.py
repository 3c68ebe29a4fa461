"""A small decoder-only transformer, written from scratch: model, tokenizer, decoding, training."""
