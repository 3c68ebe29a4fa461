"""What of a request may leave the process: CLOUD_PII_POLICY applied to a remote model's whole
request, every turn and stop string read as one text (redacted, or refused with a 422); local
models get the request as written."""

from __future__ import annotations

import dataclasses

from app.backends.catalog import is_remote
from app.backends.protocol import Message, ModelInfo, SamplingParams
from app.banking.pii import Policy, blocked, redact_all
from app.telemetry.record import RequestRecord

Request = tuple[tuple[Message, ...], SamplingParams]


def outbound(
    conversation: tuple[Message, ...],
    params: SamplingParams,
    info: ModelInfo,
    policy: Policy,
    record: RequestRecord | None,
) -> Request:
    """The turns and parameters as they may be sent to `info`'s model; each find is counted
    on the record (an evaluation's questions have none)."""
    if policy == "allow" or not is_remote(info.backend):
        return conversation, params
    turns = len(conversation)
    redactions = redact_all([m.content for m in conversation] + list(params.stop))
    if record is not None:
        record.found_pii(redactions.found, "blocked" if policy == "block" else "redacted")
    if policy == "block" and redactions.found:
        raise blocked(redactions.found)
    if not redactions.found:
        return conversation, params
    texts = redactions.texts
    masked = tuple(Message(m.role, t) for m, t in zip(conversation, texts[:turns], strict=True))
    return masked, dataclasses.replace(params, stop=texts[turns:])
