"""A config dataclass from parsed arguments: each flag's `dest` is the field it sets."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

Config = TypeVar("Config")


def config_from(config_type: type[Config], args: argparse.Namespace) -> Config:
    """`config_type` with every field that a flag set (the others keep their defaults)."""
    assert dataclasses.is_dataclass(config_type)
    given: dict[str, Any] = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(config_type)
        if hasattr(args, f.name)
    }
    return config_type(**given)
