from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import DEFAULT_CHECKPOINT, get_settings


def test_defaults_serve_the_embedded_checkpoint_with_auth_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("ACTIVE_MODEL", "API_KEYS", "ADMIN_API_KEY", "CUSTOM_CHECKPOINT"):
        monkeypatch.delenv(name, raising=False)
    settings = get_settings()
    assert (settings.active_model, settings.custom.checkpoint) == ("custom", DEFAULT_CHECKPOINT)
    assert (settings.api_keys, settings.admin_api_key) == ([], None)
    assert (settings.benchmark_every, settings.switch_mode) == (50, "overlap")


def test_keys_come_comma_separated_and_stay_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", " alpha-0123456789, beta-0123456789a ,,")
    monkeypatch.setenv("ADMIN_API_KEY", "root-0123456789ab")
    settings = get_settings()
    assert [k.get_secret_value() for k in settings.api_keys] == [
        "alpha-0123456789",
        "beta-0123456789a",
    ]
    assert "alpha" not in repr(settings)
    assert "root" not in str(settings)


def test_env_file_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / ".env.test"
    env.write_text("ACTIVE_MODEL=echo\nMAX_QUEUE=3\nSWITCH_MODE=drain_first\n")
    monkeypatch.setenv("MAX_QUEUE", "9")
    settings = get_settings(env)
    assert (settings.active_model, settings.max_queue, settings.switch_mode) == (
        "echo",
        9,
        "drain_first",
    )


@pytest.mark.parametrize("profile", [".env.custom", ".env.qlora", ".env.gemini"])
def test_shipped_profiles_are_valid(profile: str) -> None:
    path = Path(__file__).resolve().parents[1] / profile
    settings = get_settings(path)
    assert settings.active_model == profile.removeprefix(".env.")
    assert "GEMINI_API_KEY=" not in path.read_text()


def test_a_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCH_MODE", "sometimes")
    with pytest.raises(ValueError, match="switch_mode"):
        get_settings()


def test_a_secret_file_gives_the_key_and_an_empty_variable_does_not_hide_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gemini_api_key").write_text("from-the-secret\n")
    monkeypatch.setenv("GEMINI_API_KEY", "")  # compose's `${GEMINI_API_KEY:-}` when unset
    settings = get_settings(secrets_dir=tmp_path)
    assert settings.gemini.api_key is not None
    assert settings.gemini.api_key.get_secret_value() == "from-the-secret"
    monkeypatch.setenv("GEMINI_API_KEY", "from-the-environment")
    key = get_settings(secrets_dir=tmp_path).gemini.api_key
    assert key is not None
    assert key.get_secret_value() == "from-the-environment"


def test_backend_options_come_from_their_prefixed_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QLORA_MAX_MODEL_LEN", "4096")
    monkeypatch.setenv("GEMINI_CLI_THEME", "dark")  # another tool's variable under our prefix
    env = tmp_path / ".env"
    env.write_text("CUSTOM_MAX_BATCH=4\nGEMINI_TIMEOUT_S=7\n")
    settings = get_settings(env, gemini_model="gemini-2.5-pro")
    assert (settings.qlora.max_model_len, settings.custom.max_batch) == (4096, 4)
    assert (settings.gemini.timeout_s, settings.gemini.model) == (7.0, "gemini-2.5-pro")


def test_a_bad_backend_option_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QLORA_MAX_MODEL_LEN", "8")
    with pytest.raises(ValidationError, match=r"qlora\.max_model_len"):
        get_settings()
