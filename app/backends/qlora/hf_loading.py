"""Loading a base model and its LoRA adapter with transformers + peft, 4-bit when asked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from app.backends.qlora.options import QLoRAOptions

if TYPE_CHECKING:
    from app.backends.qlora.hf_engine import TransformersEngine

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def nf4_config() -> Any:
    """QLoRA's quantization: 4-bit NormalFloat, double quantization, bfloat16 compute."""
    from transformers import BitsAndBytesConfig

    config: Any = BitsAndBytesConfig  # typed differently across transformers releases
    return config(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def load_base(base_model: str, quantization: str, dtype: str = "auto") -> Any:
    """The base causal LM, on the GPU when there is one, 4-bit with bitsandbytes."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": _DTYPES.get(dtype, "auto")}
    if quantization == "bitsandbytes":
        kwargs["quantization_config"] = nf4_config()
    kwargs["device_map"] = {"": 0} if torch.cuda.is_available() else {"": "cpu"}
    return AutoModelForCausalLM.from_pretrained(base_model, **kwargs)


def load_transformers(options: QLoRAOptions, tokenizer: Any) -> TransformersEngine:
    from peft import PeftModel

    from app.backends.qlora.hf_engine import TransformersEngine

    base = load_base(options.base_model, options.quantization, options.dtype)
    model = PeftModel.from_pretrained(base, options.adapter)
    model.eval()
    return TransformersEngine(model, tokenizer, options.max_batch)
