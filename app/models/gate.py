"""The conditions a gated switch checks before anything is loaded into the live slot: the
candidate's record as a shadow (samples, agreement, errors) and, when asked, an evaluation run
in-process on it. Each condition gets its figure and its verdict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.backends.protocol import Adapter, Message, SamplingParams
from app.banking.corpus import Example, read_csv
from app.banking.intents import IntentSet
from app.banking.pii import Policy
from app.errors import InvalidRequest
from app.evaluation.evaluate import EvalReport, ExampleAnswer, evaluate
from app.models.asking import ask_once

EVAL_MAX_TOKENS = 64  # as `bankllm eval`'s default
EVAL_CONCURRENCY = 4
EVAL_MAX_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Requirements:
    min_shadow_samples: int | None = None
    min_agreement: float | None = None
    max_error_rate: float | None = None
    min_eval_accuracy: float | None = None
    eval_data: Path | None = None  # a text,category CSV on the server, for min_eval_accuracy
    eval_limit: int | None = None  # only its first N rows

    def given(self) -> dict[str, Any]:
        """The conditions asked for, as JSON (for the audit trail)."""
        return {
            k: str(v) if isinstance(v, Path) else v
            for k, v in asdict(self).items()
            if v is not None
        }


@dataclass(frozen=True)
class Verdict:
    condition: str
    required: float
    measured: float | None  # None: nothing to measure yet (no samples)
    passed: bool


def _at_least(condition: str, required: float, measured: float | None) -> Verdict:
    return Verdict(condition, required, measured, measured is not None and measured >= required)


def shadow_verdicts(require: Requirements, figures: Mapping[str, Any] | None) -> list[Verdict]:
    """The conditions on the candidate's shadow figures (None: it has never been a shadow)."""
    f = figures or {}
    verdicts = []
    if require.min_shadow_samples is not None:
        samples = f.get("samples", 0)
        verdicts.append(_at_least("min_shadow_samples", require.min_shadow_samples, samples))
    if require.min_agreement is not None:
        verdicts.append(_at_least("min_agreement", require.min_agreement, f.get("agreement")))
    if require.max_error_rate is not None:
        rate = f.get("error_rate")
        passed = rate is not None and rate <= require.max_error_rate
        verdicts.append(Verdict("max_error_rate", require.max_error_rate, rate, passed))
    return verdicts


def eval_examples(require: Requirements) -> list[Example]:
    """The evaluation's examples, read before anything loads: a bad path is the admin's 422."""
    if require.min_eval_accuracy is None:
        return []
    where: list[str | int] = ["require", "eval_data"]
    if require.eval_data is None:
        raise InvalidRequest.fields((where, "min_eval_accuracy needs eval_data (a CSV)", None))
    path = require.eval_data
    if not path.is_file() or path.stat().st_size > EVAL_MAX_BYTES:  # no FIFO, no /dev/zero
        problem = f"not a regular file of at most {EVAL_MAX_BYTES // 2**20} MiB"
        raise InvalidRequest.fields((where, problem, str(path)))
    try:
        examples = read_csv(require.eval_data)[: require.eval_limit]
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest.fields((where, str(exc), str(require.eval_data))) from exc
    if not examples:
        raise InvalidRequest.fields((where, "the CSV has no rows", str(require.eval_data)))
    return examples


async def evaluate_adapter(
    adapter: Adapter,
    intents: IntentSet,
    examples: list[Example],
    data: str,
    policy: Policy,
    timeout_s: float,
) -> EvalReport:
    """`bankllm eval`'s scoring, in-process, on a loaded adapter (greedy, as the command);
    a cloud candidate gets each question under CLOUD_PII_POLICY, within REQUEST_TIMEOUT_S."""
    info = adapter.info
    params = SamplingParams(max_tokens=EVAL_MAX_TOKENS, temperature=0.0)

    async def ask(text: str, label: str) -> ExampleAnswer:
        conversation = (Message("user", text),)
        r = await ask_once(adapter, conversation, params, intents, policy, timeout_s)
        return ExampleAnswer(
            r.intent,
            r.reply,
            r.latency_ms,
            r.completion_tokens,
            info.name,
            info.backend,
            info.version,
            r.error_type,
            r.handoff,
            r.confidence,
        )

    return await evaluate(
        ask, examples, intents, data=data, concurrency=EVAL_CONCURRENCY, progress=False
    )


def eval_verdict(required: float, report: EvalReport | None) -> Verdict:
    """The evaluation's condition; without a report (not run: an earlier one failed), failed."""
    measured = None if report is None else round(report.accuracy, 4)
    return _at_least("min_eval_accuracy", required, measured)
