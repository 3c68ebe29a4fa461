"""The custom backend's options: one declaration, read from the CUSTOM_* settings or from a
MODELS_FILE entry (an unknown key is an error that names it)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "default"


class CustomOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    checkpoint: Path = DEFAULT_CHECKPOINT  # a folder `bankllm train` wrote
    max_batch: int | None = Field(None, ge=1)  # requests decoded together; None: MAX_CONCURRENCY
    # Compile the decoding step (torch.compile) in the background once loaded; requests are
    # served by the eager step, with the same tokens, until it is ready.
    compile: bool = True
    # the price of a CPU core-hour, for the cost of an answer (its CPU-seconds): an on-demand
    # cloud vCPU's order of magnitude; set what your machines cost
    cpu_hour_usd: float = Field(0.04, ge=0)
