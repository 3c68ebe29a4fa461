"""One checkpoint folder: model.safetensors, config.json (GPTConfig + metadata), tokenizer.json."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_model, save_model
from tokenizers import Tokenizer

from app.backends.custom.gpt.model import GPT, GPTConfig
from app.backends.custom.gpt.tokenizer import plain_specials

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"


@dataclass
class Checkpoint:
    model: GPT
    tokenizer: Tokenizer
    version: str  # first 12 hex digits of the weights' sha256
    meta: dict[str, Any] = field(default_factory=dict)  # how it was trained
    # Tokens that restart the context: the answer goes on from that token alone, at position
    # 0 (the intent label, so the reply is decoded from the label, not from the question).
    restart_tokens: frozenset[int] = frozenset()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def save_checkpoint(
    folder: Path,
    model: GPT,
    tokenizer: Tokenizer,
    meta: dict[str, Any] | None = None,
    restart_tokens: Collection[int] = (),
) -> str:
    """Write the three files into folder; returns the checkpoint's version."""
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / WEIGHTS))
    tokenizer.save(str(folder / TOKENIZER))
    version = _digest(folder / WEIGHTS)
    config = {
        "model": model.config.to_dict(),
        "version": version,
        "restart_tokens": sorted(restart_tokens),
        "meta": meta or {},
    }
    (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return version


def read_config(folder: Path) -> dict[str, Any]:
    """The checkpoint's config.json, without loading its weights."""
    path = folder / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {folder}: {CONFIG} is missing")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def update_meta(folder: Path, **values: Any) -> None:
    """Set entries of the checkpoint's metadata (its weights, so its version, unchanged)."""
    config = read_config(folder)
    config["meta"] = {**config.get("meta", {}), **values}
    (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def load_checkpoint(folder: Path) -> Checkpoint:
    """Load weights, config and tokenizer; the model comes back in eval mode on the CPU."""
    config = read_config(folder)
    model = GPT(GPTConfig.from_dict(config["model"]))
    load_model(model, str(folder / WEIGHTS))
    model.eval()
    tokenizer = plain_specials(Tokenizer.from_file(str(folder / TOKENIZER)))
    return Checkpoint(
        model,
        tokenizer,
        str(config["version"]),
        dict(config.get("meta", {})),
        frozenset(int(t) for t in config.get("restart_tokens", ())),
    )
