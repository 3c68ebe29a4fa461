"""One question to a loaded model outside the request path, as a gate's evaluation and the
shadow ask it: under the PII policy for a cloud model, within a time limit, and a failure told
as the answer's status rather than raised."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from app.backends.protocol import Adapter, Message, SamplingParams, collect
from app.banking.intents import IntentSet, IntentSplitter
from app.banking.pii import Policy
from app.errors import InternalError, ServiceError
from app.models.outbound import outbound
from app.telemetry.record import RequestRecord

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelReply:
    """A model's answer to one question, or what went wrong (`status` other than "ok")."""

    status: str  # "ok", or a request status: timeout, upstream_error, refused...
    error_type: str | None
    intent: str | None
    reply: str  # the text without its intent line
    latency_ms: float
    completion_tokens: int
    cost_usd: float | None
    handoff: str | None = None  # why the answer was a hand-off, if it was
    confidence: float | None = None
    named: str | None = None  # the label the model named, before any threshold


async def ask_once(
    adapter: Adapter,
    conversation: tuple[Message, ...],
    params: SamplingParams,
    intents: IntentSet,
    policy: Policy,
    timeout_s: float,
    record: RequestRecord | None = None,
) -> ModelReply:
    """Ask `adapter` once and read its whole answer; `record` counts what redaction found."""
    started = time.perf_counter()
    try:
        turns, sent = outbound(conversation, params, adapter.info, policy, record)
        async with asyncio.timeout(timeout_s):
            completion = await collect(adapter.stream(turns, sent))
    except ServiceError as exc:
        return _failed(started, exc.outcome, exc.type)
    except TimeoutError:
        return _failed(started, "timeout", "timeout")
    except Exception:  # a bug in one answer must not stop a shadow or an evaluation
        logger.exception("asking %s failed", adapter.info.name)
        return _failed(started, "upstream_error", InternalError().type)
    splitter = IntentSplitter(intents, adapter.info.handoff_below)
    reply = splitter.feed(completion.text, completion.confidence) + splitter.finish()
    usage = completion.usage
    return ModelReply(
        "ok",
        None,
        splitter.intent,
        reply,
        _since(started),
        usage.completion_tokens,
        usage.cost_usd,
        splitter.handoff,
        completion.confidence,
        splitter.named,
    )


def _failed(started: float, status: str, error_type: str) -> ModelReply:
    return ModelReply(status, error_type, None, "", _since(started), 0, None)


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
