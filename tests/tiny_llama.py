"""A tiny Llama, its tokenizer and a LoRA adapter, built here: what the qlora tests serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from app.backends.qlora.prompting import SYSTEM_PROMPT
from app.banking.corpus import build_corpus
from app.banking.intents import IntentSet, format_answer

SPECIALS = ["<|pad|>", "<|begin|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
SPECIALS += ["<|ipython|>", "<|python_tag|>"]  # Llama 3.1's tool turn, and vLLM's parser's mark
# Llama 3.1's tool calling in our own words: the tools in the system turn, as JSON; a call is
# the assistant's turn written as {"name": ..., "parameters": ...}; a result is an ipython turn.
CHAT_TEMPLATE = """{%- for m in messages -%}
{%- if m['role'] == 'tool' -%}<|ipython|>{{ m['content'] }}<|end|>
{%- elif m['role'] == 'assistant' and m.get('tool_calls') -%}<|assistant|>
{%- for c in m['tool_calls'] -%}
{"name": "{{ c['function']['name'] }}", "parameters": {{ c['function']['arguments'] | tojson }}}
{%- endfor -%}<|end|>
{%- else -%}<|{{ m['role'] }}|>{{ m['content'] }}
{%- if m['role'] == 'system' and tools -%}
Call a function by answering with its JSON {"name": its name, "parameters": its arguments}:
{%- for t in tools %} {{ t | tojson }}{% endfor -%}
{%- endif -%}<|end|>
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"""


def build_tokenizer(vocab_size: int = 600) -> Any:
    """Byte-level BPE trained on our own corpus and replies, with a chat template."""
    intents = IntentSet.load()
    texts = [e.text for e in build_corpus(variants=1)] + [SYSTEM_PROMPT]
    texts += [format_answer(i.label, i.reply) for i in intents.intents.values()]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    fast_cls: Any = PreTrainedTokenizerFast  # typed differently across transformers releases
    fast = fast_cls(
        tokenizer_object=tokenizer, bos_token="<|begin|>", eos_token="<|end|>", pad_token="<|pad|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_base(folder: Path, seed: int = 0) -> Path:
    """A 2-layer Llama with random weights (float32) and its tokenizer, saved to folder."""
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 64: a size every attention backend takes
        num_key_value_heads=1,
        max_position_embeddings=1024,  # room for tool definitions in the prompt
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    llama: Any = LlamaForCausalLM
    model = llama(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_adapter(base: Path, folder: Path, rank: int = 8, seed: int = 1) -> Path:
    """A LoRA on the attention projections with random (non-zero) B, so it changes outputs."""
    torch.manual_seed(seed)
    model = LlamaForCausalLM.from_pretrained(base)
    lora = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    get_peft_model(model, lora).save_pretrained(str(folder))
    return folder
