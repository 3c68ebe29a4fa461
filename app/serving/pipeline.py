"""The request path the HTTP layer is thin over. One request walks one way: limits, admission,
a lease on the active model, the adapter's stream (the fallback's, when a remote model fails
before its first token), the intent split, and one record that writes its effects.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any

from app.backends.catalog import is_remote
from app.backends.protocol import (
    Adapter,
    FinishReason,
    Message,
    ModelSpec,
    SamplingParams,
    TokenLogprob,
)
from app.backends.tools import ToolCall
from app.banking.intents import IntentSet, IntentSplitter
from app.errors import ModelNotActive, ServiceError, UpstreamError
from app.models.loaded import Loaded
from app.models.mirror import Mirror
from app.models.shadow import Shadow
from app.models.switching import ActiveModel
from app.serving.admission import Admission
from app.serving.answering import ModelStream, ReplyReading, open_answer
from app.serving.deadline import Deadline
from app.serving.drain import Drain
from app.serving.failures import recorded_failure
from app.serving.limits import Limits
from app.serving.quotas import Grant, Quotas
from app.serving.results import GenerateResult, RequestContext, StreamEvent
from app.settings import Settings
from app.telemetry.benchlog import BenchmarkLog
from app.telemetry.metrics import Metrics
from app.telemetry.pseudonyms import Pseudonyms
from app.telemetry.record import RecordSinks, RequestRecord

__all__ = ["GenerateResult", "Pipeline", "RequestContext", "StreamEvent"]
GENERATE = RequestContext()


class Pipeline:
    """The request path: one request checked, admitted, answered and recorded. The parts it
    walks through are built by the service (`app.service`) and passed in."""

    def __init__(
        self,
        settings: Settings,
        intents: IntentSet,
        registry: dict[str, ModelSpec],
        model: ActiveModel,
        *,
        metrics: Metrics,
        log: BenchmarkLog,
        shadow: Shadow,
        drain: Drain,
    ) -> None:
        self._timeout_s = settings.request_timeout_s
        self._intents = intents
        self.limits = Limits(settings, registry, intents)
        self._quotas = Quotas(settings)
        self._model = model
        self._admission = Admission(
            settings.max_concurrency, settings.max_queue, metrics.queue_depth
        )
        self._sinks = RecordSinks(
            metrics,
            log,
            lambda: model.info,
            self._admission.observe_latency,
            Pseudonyms.keyed(settings.pseudonym_secret),
        )
        self._fallback: Loaded | None = None
        self._policy = settings.cloud_pii_policy
        self._shadow = shadow
        self._drain = drain

    def answer_with_fallback(self, fallback: Loaded) -> None:
        """Let `fallback` answer when the active model, a remote one, fails before its first
        token (FALLBACK_MODEL)."""
        self._fallback = fallback

    @property
    def fallback(self) -> str | None:
        """The loaded FALLBACK_MODEL that would answer for the active model, if any."""
        active = self._model.info
        if active is None or self._fallback is None or self._fallback.name == active.name:
            return None
        return self._fallback.name

    async def generate(
        self,
        prompt: str | None = None,
        *,
        earlier: Sequence[str] = (),
        messages: Sequence[Message] | None = None,
        origin: RequestContext = GENERATE,
        **options: Any,
    ) -> GenerateResult:
        """One whole answer; arguments as in `stream`."""
        deadline = Deadline(self._timeout_s)
        result: GenerateResult | None = None
        # One timer for the whole answer: nothing runs between its pieces but this loop.
        async with deadline:
            asked = self._serve_one(prompt, earlier, messages, origin, options, False, deadline)
            async for event in asked:
                result = event.result
        assert result is not None, "a walk that ends without an error ends with its result"
        return result

    def stream(
        self,
        prompt: str | None = None,
        *,
        earlier: Sequence[str] = (),
        messages: Sequence[Message] | None = None,
        origin: RequestContext = GENERATE,
        **options: Any,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Reply deltas, then one event with the result. A `prompt` is one user turn (after the
        customer's `earlier` ones, oldest first), or give `messages`; `origin` says which API
        asked, for which model and user; options: max_tokens, temperature, top_p, stop, seed."""
        deadline = Deadline(self._timeout_s)
        return self._serve_one(prompt, earlier, messages, origin, options, True, deadline)

    def refuse(self, error: ServiceError, api: str = "generate") -> None:
        """Record a request refused before it reached the pipeline (401, 413, a bad body)."""
        record = self._sinks.open(stream=False, api=api)
        record.fail(error)
        record.commit()

    @property
    def _serves_remote(self) -> bool:
        """Whether the active model is a cloud one: its requests count against a day's spend."""
        info = self._model.info
        return info is not None and is_remote(info.backend)

    async def _serve_one(
        self,
        prompt: str | None,
        earlier: Sequence[str],
        messages: Sequence[Message] | None,
        context: RequestContext,
        options: dict[str, Any],
        streamed: bool,
        deadline: Deadline,
    ) -> AsyncGenerator[StreamEvent, None]:
        """One request, start to end: checked, admitted, answered by the active model (or the
        fallback), its deltas yielded as they come when streamed, then its result; whatever
        happens, its record is written once."""
        record = self._sinks.open(streamed, context.api)
        record.by_user(context.user)
        mirror: Mirror | None = None
        grant: Grant | None = None
        try:
            self._drain.admit(deadline)
            asked = (prompt, earlier, messages)
            conversation, params = self.limits.checked(*asked, context, options, record)
            # before the queue, so one key cannot fill it either
            grant = self._quotas.admit(context.key, params.max_tokens, self._serves_remote)
            async with self._admission.slot(deadline), self._model.lease(deadline) as active:
                self._check_named(context, active)
                answer = await open_answer(
                    self._answering(active), conversation, params, self._policy, deadline, record
                )
                async with answer:
                    mirror = self._shadow.offer(record, conversation, params)
                    below = record.model.handoff_below if record.model else None
                    splitter = IntentSplitter(self._intents, below)
                    reading = ReplyReading(answer, splitter, record, params.logprobs is not None)
                    if streamed:
                        async for delta, logprobs in reading.deltas(deadline):
                            yield _delta(record, delta, splitter.handoff, logprobs)
                    else:
                        await reading.whole()
                    record.intent, record.handoff = splitter.intent, splitter.handoff
                    calls = _calls(answer, params, record)
                    record.end()
                if record.fallback_from is None:
                    self._model.answered(active)
            finish = _finish(answer, record, calls)
            result = GenerateResult.of(record, reading.text, finish, calls, reading.logprobs())
            yield StreamEvent(record.request_id, result=result, model=record.model)
        except BaseException as exc:
            error = recorded_failure(exc, record, deadline)
            if error is exc:
                raise
            raise error from exc
        finally:
            if grant is not None:
                _settle(grant, record)
            record.commit()
            self._drain.leave(deadline)
            if mirror is not None:
                mirror.live_done()

    @staticmethod
    def _check_named(context: RequestContext, active: Adapter) -> None:
        """A request that names a model is answered by that model only."""
        if context.model is not None and context.model != active.info.name:
            raise ModelNotActive(
                f"model {context.model!r} is registered but {active.info.name!r} is the "
                "active model; name it, or none, or switch with POST /switch (admin)",
                {"active": active.info.name},
            )

    def _answering(self, active: Adapter) -> list[Adapter | Loaded]:
        """Who may answer, in order: the active model, then FALLBACK_MODEL if it is another."""
        if self._fallback is not None and self._fallback.name != active.info.name:
            return [active, self._fallback]
        return [active]


def _delta(
    record: RequestRecord,
    delta: str,
    handoff: str | None,
    logprobs: tuple[TokenLogprob, ...] | None,
) -> StreamEvent:
    """A streamed piece of the reply, with the model answering (the fallback, once it does)."""
    return StreamEvent(
        record.request_id, delta, model=record.model, handoff=handoff, logprobs=logprobs
    )


def _calls(
    answer: ModelStream, params: SamplingParams, record: RequestRecord
) -> tuple[ToolCall, ...]:
    """The tool calls the caller is given: none with a hand-off (the assistant acts on no
    request it hands to a person); a model that had to call one and ended without has failed."""
    if record.handoff is not None:
        return ()
    calls = answer.checked_calls(record)
    must_call = params.tools is not None and params.tools.must_call
    if must_call and not calls and answer.finish != "length":  # max_tokens may cut a call
        name = record.model.name if record.model is not None else "the model"
        raise UpstreamError(f"{name} called no tool, though the request's tool_choice needs one")
    record.tool_calls = tuple(call.name for call in calls)
    return calls


def _finish(
    answer: ModelStream, record: RequestRecord, calls: tuple[ToolCall, ...]
) -> FinishReason:
    """Why the answer ended: a hand-off's text is whole, however far the model's own reply
    went; an answer with tool calls waits for their results."""
    if record.handoff is not None:
        return "stop"
    return "tool_calls" if calls else answer.finish


def _settle(grant: Grant, record: RequestRecord) -> None:
    """Give back to the caller's quota what the request did not use. One cut after tokens came
    has no usage: it keeps all it took."""
    usage = record.usage
    cut = record.first_token_at is not None and not record.has_usage
    grant.settle(None if cut else usage.completion_tokens, usage.cost_usd)
