"""The service starts without the optional packages of the qlora and gemini backends: they are
imported only when such a model loads."""

from __future__ import annotations

import subprocess
import sys

OPTIONAL = ("transformers", "peft", "bitsandbytes", "accelerate", "vllm", "google.genai", "ray")


def test_the_service_and_the_cli_import_without_the_qlora_packages() -> None:
    blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in OPTIONAL)
    code = (
        f"import sys; {blocked}; "
        "import app.cli, app.main; "
        "from app.cli import build_parser; build_parser(); "
        "from app.backends.catalog import BACKENDS; print(sorted(BACKENDS))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['custom', 'echo', 'gemini', 'qlora']"
