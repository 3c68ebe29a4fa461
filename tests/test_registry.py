from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.registry import ModelSpec, build_registry
from app.settings import get_settings


def test_defaults_come_from_the_settings(tmp_path: Path) -> None:
    registry = build_registry(
        get_settings(
            custom_checkpoint=tmp_path, qlora_engine="transformers", gemini_model="gemini-2.5-pro"
        )
    )
    assert registry == {
        "custom": ModelSpec("custom", "custom", {"checkpoint": str(tmp_path), "max_batch": 16}),
        "qlora": ModelSpec(
            "qlora",
            "qlora",
            {
                "base_model": "",
                "adapter": "",
                "engine": "transformers",
                "quantization": "bitsandbytes",
                "dtype": "auto",
                "max_model_len": 2048,
                "max_lora_rank": 16,
                "gpu_memory_utilization": 0.85,
                "kv_cache_bytes": None,
                "max_batch": 8,
            },
        ),
        "gemini": ModelSpec(
            "gemini",
            "gemini",
            {
                "model": "gemini-2.5-pro",
                "api_key": None,
                "base_url": None,
                "timeout_s": 30.0,
                "retry_attempts": 3,
                "retry_initial_s": 0.5,
                "retry_max_s": 8.0,
                "max_retry_wait_s": 10.0,
                "breaker_failures": 5,
                "breaker_cooldown_s": 30.0,
                "price_input_per_mtok": 0.3,
                "price_output_per_mtok": 2.5,
                "thinking_budget": 0,
            },
        ),
    }


def test_a_models_file_gemini_takes_the_settings_it_does_not_name(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text(json.dumps([{"name": "pro", "backend": "gemini", "options": {"model": "p"}}]))
    settings = get_settings(models_file=path, gemini_api_key="k", gemini_timeout_s=5)
    options = build_registry(settings)["pro"].options
    assert (options["model"], options["api_key"], options["timeout_s"]) == (
        "p",
        settings.gemini_api_key,
        5.0,
    )


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
    assert registry["custom-v2"] == ModelSpec(
        "custom-v2", "custom", {"checkpoint": "/ckpt/v2", "max_batch": 16}
    )
    assert registry["gemini"].options["model"] == "gemini-2.5-flash-lite"


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
