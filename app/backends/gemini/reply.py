"""Reading Gemini's streamed chunks: the reply text, the finish reason, and the refusals (a
blocked prompt, a reply stopped for safety) that are errors, not short answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app.backends.protocol import FinishReason, Usage
from app.errors import UpstreamRefused, UpstreamSafetyStop

if TYPE_CHECKING:
    from google.genai import types

_FINISH: dict[str, FinishReason] = {"STOP": "stop", "MAX_TOKENS": "length"}
# Gemini's safety verdicts, on the prompt (blockReason) or on the reply (finishReason)
_SAFETY = frozenset({"SAFETY", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"})


def text_and_reason(model: str, response: types.GenerateContentResponse) -> tuple[str, str | None]:
    """A chunk's reply text (thoughts left out) and its finish reason, if it has one."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = _name(feedback.block_reason)
        refusal = UpstreamSafetyStop if reason in _SAFETY else UpstreamRefused
        raise refusal(f"{model} blocked the prompt ({reason})", {"block_reason": reason})
    if not response.candidates:
        return "", None
    candidate = response.candidates[0]
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    text = "".join(p.text for p in parts if p.text and not p.thought)
    finish = candidate.finish_reason
    return text, None if finish is None else _name(finish)


def finish_reason(model: str, reason: str | None) -> FinishReason:
    """Ours for Gemini's; any other than STOP and MAX_TOKENS (SAFETY, RECITATION) refuses."""
    if reason in _FINISH:
        return _FINISH[reason]
    refusal = UpstreamSafetyStop if reason in _SAFETY else UpstreamRefused
    raise refusal(
        f"{model} stopped its reply early (finishReason {reason})", {"finish_reason": reason}
    )


def _name(value: Any) -> str:
    return str(getattr(value, "value", value))


def usage_of(
    response: types.GenerateContentResponse, chunks: int, cost_usd: Callable[[int, int], float]
) -> Usage:
    """The usage the last chunk reports (thoughts billed as output), else the chunks counted."""
    meta = response.usage_metadata
    if meta is None:
        return Usage(0, chunks)
    prompt = meta.prompt_token_count or 0
    output = meta.candidates_token_count or 0
    billed = output + (meta.thoughts_token_count or 0)
    return Usage(prompt, output, cost_usd(prompt, billed))
