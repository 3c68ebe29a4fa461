"""A process that switches among custom models of many shapes keeps its compiled decoding
step: one compiled function serves every model, with a recompile budget sized for them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import torch

from app.backends.custom.adapter import CustomAdapter
from app.backends.custom.gpt.checkpoint import load_checkpoint, save_checkpoint
from app.backends.custom.gpt.model import GPT, GPTConfig
from tests.conftest import ServeFactory

pytestmark = pytest.mark.anyio
SHAPES = 5  # two graphs a shape: past the compiler's own limit of 8 at the fifth


async def test_twenty_switches_among_five_shapes_each_decode_with_the_compiled_step(
    tmp_path: Path, checkpoints: dict[str, Path], serve: ServeFactory
) -> None:
    tokenizer = load_checkpoint(checkpoints["random"]).tokenizer
    models = []
    for shape in range(1, SHAPES + 1):
        torch.manual_seed(shape)
        config = GPTConfig(tokenizer.get_vocab_size(), 64, n_layer=1, n_head=2, n_embd=8 * shape)
        folder = tmp_path / f"shape-{shape}"
        save_checkpoint(folder, GPT(config).eval(), tokenizer, {"data": "none"})
        options = {"checkpoint": str(folder), "compile": True, "max_batch": 2}
        models.append({"name": f"shape-{shape}", "backend": "custom", "options": options})
    (tmp_path / "shapes.json").write_text(json.dumps({"models": models}))
    in_use = []
    async with serve(models_file=tmp_path / "shapes.json", active_model="echo") as (
        _,
        _,
        service,
    ):
        for turn in range(20):
            await service.switch(f"shape-{turn % SHAPES + 1}")
            loaded = service.model.current
            assert loaded is not None
            assert isinstance(loaded.adapter, CustomAdapter)
            assert loaded.adapter.decoder is not None
            stepper = loaded.adapter.decoder.stepper
            await asyncio.to_thread(stepper.settled.wait, 300)
            in_use.append((loaded.name, stepper.compiled.is_set(), stepper.compile_error))
            await service.pipeline.generate("where is my card", max_tokens=2)
    assert in_use == [(f"shape-{t % SHAPES + 1}", True, None) for t in range(20)]
