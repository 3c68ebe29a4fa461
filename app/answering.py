"""Who answers a request: the active model, or, when a remote one fails before its first
piece, the next that may (FALLBACK_MODEL)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from contextlib import AsyncExitStack

from app.adapters.protocol import Adapter, Message, Piece, SamplingParams
from app.banking.pii import Policy
from app.deadline import Deadline
from app.errors import UpstreamError
from app.loaded import Loaded
from app.outbound import outbound
from app.telemetry.record import RequestRecord

logger = logging.getLogger(__name__)


async def open_answer(
    stack: AsyncExitStack,
    answering: Sequence[Adapter | Loaded],
    conversation: tuple[Message, ...],
    params: SamplingParams,
    policy: Policy,
    deadline: Deadline,
    record: RequestRecord,
) -> tuple[AsyncGenerator[Piece, None], Piece | None]:
    """Start a stream and await its first piece: the first of `answering` (the active model,
    held), or, when a remote model fails before it, the next one's (a loaded one is leased on
    `stack`). Each model gets the turns CLOUD_PII_POLICY lets it have."""
    first = answering[0]
    active = first.adapter.info if isinstance(first, Loaded) else first.info
    failure: UpstreamError | None = None
    for candidate in answering:
        if isinstance(candidate, Loaded):
            adapter = await stack.enter_async_context(candidate.lease())
        else:
            adapter = candidate
        if failure is None:
            record.serve_with(adapter.info)
        else:
            name = adapter.info.name
            logger.warning("%s failed (%s); %s answers", active.name, failure.type, name)
            record.fell_back(active, failure, adapter.info)
        pieces = adapter.stream(outbound(conversation, adapter.info, policy, record), params)
        try:
            return pieces, await deadline.bound(anext(pieces, None))
        except UpstreamError as exc:
            await pieces.aclose()
            failure = exc
        except BaseException:
            await pieces.aclose()
            raise
    assert failure is not None
    raise failure
