"""The locks in requirements/ read as `{name: version}`, and an environment's versions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from packaging.utils import canonicalize_name

from tests.helpers import ROOT

LOCKS = ROOT / "requirements"


def pins(lock: Path) -> dict[str, str]:
    """Each `name==version` line of a lock, by canonical name."""
    found: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith((" ", "#", "-")):
            found[canonicalize_name(name)] = version.split(";")[0].strip()
    return found


def installed(python: str | Path) -> dict[str, str]:
    """Every distribution installed for `python`, by canonical name."""
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return {canonicalize_name(d["name"]): d["version"] for d in json.loads(listed.stdout)}
