"""Schemathesis, generated from our own OpenAPI document, against the app in-process, with
every check: no 5xx, and every status, content type, header and schema as documented;
negative data refused; auth not ignored. FUZZ_MAX_EXAMPLES sets the cases per operation
(docs/development.md gives the longer run against a live server).

The schema is built when the module is imported, as Schemathesis' `parametrize` needs it
then (its lazy `from_fixture` fails on this pytest); its app logs to a folder of its own."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from schemathesis.checks import CHECKS, load_all_checks

from app.main import create_app
from app.settings import get_settings
from tests.helpers import ADMIN_KEY, USER_KEY

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "30"))
REFUSED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "429"]
CONFIG = {
    "seed": int(os.environ.get("FUZZ_SEED", "20261201")),  # the same cases on every run
    "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
    # every check; a body over the size limit is refused (413) before it is validated
    "checks": {"enabled": True, "negative_data_rejection": {"expected-statuses": REFUSED}},
    "output": {"sanitization": {"enabled": False}},  # the test keys are no secret
    # On /v1 a valid body may still ask what the active model cannot give: a conversation whose
    # latest user turn is white space alone asks nothing, and echo gives no log probabilities
    # (400, documented); the schema can say neither which turn is the latest nor which model
    # answers.
    "operations": [
        {
            "include-path": path,
            "checks": {
                "positive_data_acceptance": {
                    "expected-statuses": ["2XX", "400", "401", "403", "404", "409", "429"]
                }
            },
        }
        for path in ("/v1/chat/completions", "/v1/completions")
    ],
}
_LOGS = Path(tempfile.mkdtemp(prefix="bankllm-fuzz-"))
app = create_app(
    get_settings(
        active_model="echo",
        enable_echo_model=True,
        api_keys=USER_KEY,
        admin_api_key=ADMIN_KEY,
        benchmark_log=_LOGS / "bench.jsonl",
        allow_system_turns=True,  # the document lists the roles a deployment may allow
    )
)
# In-process calls: the first starts the app's lifespan; Schemathesis stops it after each test.
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", app, config=schemathesis.Config.from_dict(CONFIG)
)


def _auth(case: schemathesis.Case[Any]) -> dict[str, str]:
    """Given explicitly, so `ignored_auth` sends the request again without it and with a
    wrong key. (Per call: in pytest a project-level header would win over a per-operation one.)"""
    key = ADMIN_KEY if case.operation.path == "/switch" else USER_KEY
    return {"Authorization": f"Bearer {key}"}


def test_every_check_is_on() -> None:
    load_all_checks()
    checks = schema.config.checks_config_for()
    off = [n for n in sorted(CHECKS.get_all_names()) if not checks.get_by_name(name=n).enabled]
    assert off == []


@schema.parametrize()
def test_the_api_keeps_its_document(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(headers=_auth(case))
