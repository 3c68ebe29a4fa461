"""The qlora backend's options: one declaration, read from the QLORA_* settings or from a
MODELS_FILE entry (an unknown key is an error that names it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class QLoRAOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_model: str = ""  # a local folder or a hub id
    adapter: str = ""  # the folder `bankllm finetune` wrote
    engine: Literal["vllm", "transformers"] = "vllm"
    quantization: Literal["bitsandbytes", "none"] = "bitsandbytes"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    # prompt + reply tokens; None: the model's own context (its max_position_embeddings)
    max_model_len: int | None = Field(None, ge=16)
    max_lora_rank: int = Field(16, ge=1)  # vLLM: the largest adapter rank it accepts
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)  # vLLM on GPU: weights + KV cache
    kv_cache_bytes: int | None = Field(None, ge=1)  # vLLM: an explicit KV cache (CPU needs it)
    max_batch: int = Field(8, ge=1)  # transformers: requests decoded together
    # the price of an hour of the GPU it runs on, for the cost of an answer (its GPU-seconds):
    # an on-demand 24 GB cloud GPU's order of magnitude; set what yours costs
    gpu_hour_usd: float = Field(1.0, ge=0)

    @field_validator("kv_cache_bytes", "max_model_len", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value
