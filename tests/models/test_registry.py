from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from app.backends.custom.options import CustomOptions
from app.backends.gemini.options import GeminiOptions
from app.backends.protocol import ModelSpec
from app.backends.qlora.options import QLoRAOptions
from app.models.registry import build_registry
from app.settings import get_settings


def test_defaults_come_from_the_settings(tmp_path: Path) -> None:
    registry = build_registry(
        get_settings(
            custom_checkpoint=tmp_path,
            custom_compile=True,
            qlora_engine="transformers",
            gemini_model="gemini-2.5-pro",
        )
    )
    custom = CustomOptions(checkpoint=tmp_path, max_batch=16, compile=True)
    assert registry == {
        "custom": ModelSpec("custom", "custom", custom),
        "qlora": ModelSpec("qlora", "qlora", QLoRAOptions(engine="transformers")),
        "gemini": ModelSpec("gemini", "gemini", GeminiOptions(model="gemini-2.5-pro")),
    }


def test_a_models_file_gemini_takes_the_settings_it_does_not_name(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text(json.dumps([{"name": "pro", "backend": "gemini", "options": {"model": "p"}}]))
    settings = get_settings(models_file=path, gemini_api_key="k", gemini_timeout_s=5)
    options = build_registry(settings)["pro"].options
    assert options == GeminiOptions(model="p", api_key=SecretStr("k"), timeout_s=5.0)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"name": "v2", "backend": "custom", "options": {"checkpiont": "/v2"}},
            "model 'v2' (custom): checkpiont: Extra inputs are not permitted",
        ),
        (
            {"name": "pro", "backend": "gemini", "options": {"timeout_s": 0}},
            "model 'pro' (gemini): timeout_s: Input should be greater than 0",
        ),
        (
            {"name": "v2", "backend": "custom", "option": {}},
            "model 'v2' has unknown keys: option",
        ),
        ({"name": "v2", "backend": "custom", "options": []}, "the options of 'v2' must be an"),
    ],
)
def test_a_misspelt_or_bad_option_in_the_models_file_is_an_error_naming_it(
    tmp_path: Path, entry: dict[str, Any], message: str
) -> None:
    path = tmp_path / "models.json"
    path.write_text(json.dumps([entry]))
    with pytest.raises(ValueError, match=re.escape(f"MODELS_FILE {path}: {message}")):
        build_registry(get_settings(models_file=path))


def test_an_unknown_fallback_model_is_refused() -> None:
    with pytest.raises(ValueError, match="FALLBACK_MODEL='nope' is not a registered model"):
        build_registry(get_settings(fallback_model="nope"))


def test_models_file_adds_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text(
        json.dumps(
            [
                {"name": "custom-v2", "backend": "custom", "options": {"checkpoint": "/ckpt/v2"}},
                {
                    "name": "gemini",
                    "backend": "gemini",
                    "options": {"model": "gemini-2.5-flash-lite"},
                },
            ]
        )
    )
    registry = build_registry(get_settings(models_file=path, enable_echo_model=True))
    assert list(registry) == ["custom", "qlora", "gemini", "echo", "custom-v2"]
    v2 = CustomOptions(checkpoint=Path("/ckpt/v2"), max_batch=16, compile=False)  # the suite's
    assert registry["custom-v2"] == ModelSpec("custom-v2", "custom", v2)  # CUSTOM_COMPILE
    assert registry["gemini"].options == GeminiOptions(model="gemini-2.5-flash-lite")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "Expecting property name"),
        ('{"models": 3}', "expected a list of models"),
        ('[{"name": "x"}]', "each model needs a name and a backend"),
        ('[{"name": "x", "backend": "openai"}]', "unknown backend 'openai' for 'x'"),
    ],
)
def test_a_bad_models_file_is_refused_with_the_reason(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "models.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        build_registry(get_settings(models_file=path))
