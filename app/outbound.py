"""What of a conversation may leave the process: CLOUD_PII_POLICY applied to every turn for a
remote model (redacted, or refused with a 422); local models get the turns as written."""

from __future__ import annotations

from collections import Counter

from app.adapters.backends import is_remote
from app.adapters.protocol import Message, ModelInfo
from app.banking.pii import PiiKind, Policy, blocked, redact
from app.telemetry.record import RequestRecord


def outbound(
    conversation: tuple[Message, ...],
    info: ModelInfo,
    policy: Policy,
    record: RequestRecord | None,
) -> tuple[Message, ...]:
    """The turns as they may be sent to `info`'s model; each find is counted on the record
    (an evaluation's questions have none)."""
    if policy == "allow" or not is_remote(info.backend):
        return conversation
    redactions = [redact(m.content) for m in conversation]
    found: Counter[PiiKind] = sum((r.found for r in redactions), Counter())
    if record is not None:
        record.found_pii(found, "blocked" if policy == "block" else "redacted")
    if policy == "block" and found:
        raise blocked(found)
    return tuple(Message(m.role, r.text) for m, r in zip(conversation, redactions, strict=True))
