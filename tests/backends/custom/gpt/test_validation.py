from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from app.backends.custom.gpt.checkpoint import load_checkpoint
from app.backends.custom.gpt.generate import Sampling, generate
from app.backends.custom.gpt.tokenizer import EOS, encode_prompt, special_id
from app.backends.custom.gpt.train import train
from app.backends.custom.gpt.validation import answer_scores
from app.banking.corpus import build_corpus
from app.banking.intents import IntentSet
from tests.helpers import TINY


def test_scores_agree_with_greedy_decoding(tmp_path: Path) -> None:
    intents = IntentSet.load()
    examples = [e for e in build_corpus(variants=1) if e.category in ("age_limit", "change_pin")]
    # long enough to learn two intents by heart
    config = replace(TINY, n_embd=64, block_size=256, vocab_size=600, epochs=100, batch_size=8)
    config = replace(config, lr=3e-3)
    train(examples, intents, tmp_path, config, progress=False)
    ckpt = load_checkpoint(tmp_path)
    eos = special_id(ckpt.tokenizer, EOS)
    exact = intent = 0
    for e in examples:
        out = []
        prompt = encode_prompt(ckpt.tokenizer, e.text)
        for token in generate(
            ckpt.model, prompt, Sampling(), max_new_tokens=100, restart=ckpt.restart_tokens
        ):
            out.append(token)
            if token == eos:
                break
        text = ckpt.tokenizer.decode(out)
        exact += out[-1] == eos and text == intents.answer(e.category)
        intent += text.startswith(f"intent: {e.category}\n")
    scores = answer_scores(ckpt.model, ckpt.tokenizer, intents, examples)
    assert 0 < scores.exact == exact / len(examples)  # word for word: exactly what greedy gives
    assert intent / len(examples) <= scores.intent  # greedy also has to write `intent: ` first
