"""The pipeline on in-memory models: one walk from the limits to the row, for whole answers
and streams, with the deadline, the caller leaving, the fallback and the PII policy."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from unittest.mock import ANY

import pytest

from app.backends.protocol import Message
from app.banking.intents import IntentSet
from app.errors import GenerationTimeout, InvalidRequest, UpstreamError, UpstreamTimeout
from app.service import Service
from app.serving.pipeline import GenerateResult
from tests.conftest import ServiceFactory
from tests.helpers import read_log, sample
from tests.memory import Memory

pytestmark = pytest.mark.anyio
REPLY_TEXT = "Your card is on its way."


def _row(**fields: object) -> dict[str, object]:
    """A request row of the memory model `mem`, with the fields a test names."""
    return {
        "ts": ANY,
        "type": "request",
        "request_id": ANY,
        "model": "mem",
        "backend": "memory",
        "version": "mem-1",
        "status": "ok",
        "error_type": None,
        "stream": False,
        "latency_ms": ANY,
        "ttft_ms": ANY,
        "tpot_ms": ANY,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "tokens_per_s": ANY,
        "intent": None,
        "handoff": None,
        "confidence": None,
        "label": None,
        "cost_usd": None,
        "machine_s": None,  # a model of no machine (the in-memory one)
        "machine_unit": None,
        "fallback_from": None,
        "tools": None,
        "tool_calls": [],
        "api": "generate",
        "user": None,
        **fields,
    }


def _requests(service: Service) -> list[dict[str, object]]:
    return [r for r in read_log(service.settings, service) if r["type"] == "request"]


async def test_a_whole_answer_reads_the_stream_to_its_end_and_writes_one_row(
    start_service: ServiceFactory, memory: Memory
) -> None:
    async with start_service() as service:
        result = await service.pipeline.generate("where is my card", max_tokens=20, temperature=0)
        rows = _requests(service)
    assert result == GenerateResult(
        id=result.id,
        model="mem",
        backend="memory",
        version="mem-1",
        text=REPLY_TEXT,
        intent="card_arrival",
        finish_reason="stop",
        prompt_tokens=16,
        completion_tokens=7,
        latency_ms=ANY,
        ttft_ms=ANY,
    )
    assert memory.latest("mem").endings == ["exhausted", "exhausted"]  # the warm-up, then ours
    assert rows == [
        _row(
            request_id=result.id,
            prompt_tokens=16,
            completion_tokens=7,
            intent="card_arrival",
        )
    ]


async def test_a_stream_joins_to_the_whole_answer(start_service: ServiceFactory) -> None:
    async with start_service() as service:
        events = [e async for e in service.pipeline.stream("where is my card", temperature=0)]
        rows = _requests(service)
    *deltas, last = events
    assert last.result is not None
    assert "".join(e.delta for e in deltas) == last.result.text == REPLY_TEXT
    assert {e.id for e in events} == {last.result.id}
    assert rows == [
        _row(
            request_id=last.result.id,
            stream=True,
            prompt_tokens=16,
            completion_tokens=7,
            intent="card_arrival",
        )
    ]


async def test_a_prompt_is_one_user_turn_and_messages_pass_as_given(
    start_service: ServiceFactory, memory: Memory
) -> None:
    conversation = [Message("system", "Be brief."), Message("user", "my card")]
    async with start_service(allow_system_turns=True) as service:
        await service.pipeline.generate("where is my card")
        await service.pipeline.generate(messages=conversation)
    assert memory.latest("mem").received[1:] == [
        (Message("user", "where is my card"),),
        tuple(conversation),
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"prompt": "x" * 11}, "prompt: must be 1 to 10 characters, got 11"),
        ({"prompt": "hi", "max_tokens": 0}, "max_tokens: must be between 1 and 512"),
        ({}, "give either a prompt or messages"),
        ({"messages": [Message("system", "hi")]}, "messages: needs a message with the role user"),
        ({"messages": [Message("user", "x" * 11)]}, "messages: must be 1 to 10 characters, got 11"),
    ],
)
async def test_limits_refuse_with_a_row_and_never_reach_the_model(
    start_service: ServiceFactory,
    memory: Memory,
    arguments: dict[str, object],
    message: str,
) -> None:
    async with start_service(max_prompt_chars=10) as service:
        with pytest.raises(InvalidRequest, match=message):
            await service.pipeline.generate(**arguments)  # type: ignore[arg-type]
        rows = _requests(service)
    assert len(memory.latest("mem").received) == 1  # the warm-up only
    assert rows == [_row(status="bad_request", error_type="invalid_request", ttft_ms=None)]


async def test_the_deadline_bounds_a_whole_answer_and_a_stream(
    start_service: ServiceFactory, memory: Memory
) -> None:
    async with start_service(request_timeout_s=0.05) as service:
        memory.hold["mem"] = asyncio.Event()  # never released: the model never answers
        with pytest.raises(GenerationTimeout, match=r"REQUEST_TIMEOUT_S=0\.05 s"):
            await service.pipeline.generate("hi")
        with pytest.raises(GenerationTimeout):
            await anext(service.pipeline.stream("hi"))
        rows = _requests(service)
    assert [(r["status"], r["error_type"], r["stream"]) for r in rows] == [
        ("timeout", "timeout", False),
        ("timeout", "timeout", True),
    ]
    assert memory.latest("mem").endings == ["exhausted", "closed", "closed"]  # both let go


async def test_the_deadline_covers_the_wait_for_a_slot(
    start_service: ServiceFactory, memory: Memory
) -> None:
    async with start_service(request_timeout_s=0.05, max_concurrency=1) as service:
        async with aclosing(service.pipeline.stream("hold the only slot")) as holder:
            await anext(holder)
            with pytest.raises(GenerationTimeout):
                await service.pipeline.generate("wait for it")
            depth = sample(service, "bankllm_queue_depth")
        rows = _requests(service)
    assert depth == 0
    assert [(r["status"], r["ttft_ms"]) for r in rows] == [("timeout", None), ("cancelled", ANY)]


async def test_closing_a_stream_after_its_result_keeps_the_request_ok(
    start_service: ServiceFactory,
) -> None:
    async with start_service() as service:
        async with aclosing(service.pipeline.stream("hi")) as events:
            async for event in events:
                if event.result is not None:
                    break  # the caller has what it wanted and leaves before the end
        rows = _requests(service)
    assert [(r["status"], r["error_type"]) for r in rows] == [("ok", None)]


async def test_a_caller_who_leaves_a_stream_is_recorded_as_cancelled(
    start_service: ServiceFactory, memory: Memory
) -> None:
    async with start_service() as service:
        async with aclosing(service.pipeline.stream("hi", temperature=0)) as events:
            first = await anext(events)
        rows = _requests(service)
        in_flight = sample(service, "bankllm_requests_in_flight", model="mem", backend="memory")
    assert first.delta == "Your"  # the intent line is held back, then the reply streams
    assert memory.latest("mem").endings == ["exhausted", "closed"]
    assert [(r["status"], r["error_type"]) for r in rows] == [("cancelled", "cancelled")]
    assert in_flight == 0


async def test_the_fallback_answers_when_a_remote_model_fails_before_its_first_word(
    start_service: ServiceFactory, memory: Memory
) -> None:
    async with start_service(active_model="remote", fallback_model="mem") as service:
        memory.failures["remote"] = [UpstreamTimeout("remote timed out")]
        result = await service.pipeline.generate("where is my card", temperature=0)
        fallbacks = sample(
            service,
            "bankllm_fallbacks_total",
            model="remote",
            fallback="mem",
            error_type="upstream_timeout",
        )
        rows = _requests(service)
        in_flight = [
            sample(service, "bankllm_requests_in_flight", model=m, backend=b)
            for m, b in (("remote", "memory-remote"), ("mem", "memory"))
        ]
    assert (result.model, result.fallback_from, result.text) == ("mem", "remote", REPLY_TEXT)
    assert in_flight == [0, 0]
    assert fallbacks == 1
    assert rows[-1]["model"] == "mem"
    assert rows[-1]["fallback_from"] == "remote"


async def test_without_a_fallback_the_remote_failure_is_the_answer(
    start_service: ServiceFactory, memory: Memory
) -> None:
    async with start_service(active_model="remote") as service:
        memory.failures["remote"] = [UpstreamError("remote broke")]
        with pytest.raises(UpstreamError, match="remote broke"):
            await service.pipeline.generate("hi")
        rows = _requests(service)
    assert [(r["model"], r["status"]) for r in rows] == [("remote", "upstream_error")]


async def test_a_fallback_with_the_active_models_name_is_the_same_adapter(
    start_service: ServiceFactory, memory: Memory
) -> None:
    async with start_service(fallback_model="mem") as service:
        fallback = service.pipeline.fallback
    assert len(memory.adapters["mem"]) == 1  # loaded once, shared
    assert fallback is None  # nothing answers for a model in its own place


@pytest.mark.parametrize("policy", ["redact", "block"])
async def test_customer_numbers_never_reach_a_remote_model(
    start_service: ServiceFactory, memory: Memory, policy: str
) -> None:
    prompt = "my card 4111 1111 1111 1111 is lost"
    settings = {"cloud_pii_policy": policy, "allow_system_turns": True}
    async with start_service(active_model="remote", **settings) as service:
        if policy == "block":
            with pytest.raises(InvalidRequest, match="card"):
                await service.pipeline.generate(prompt)
        else:
            await service.pipeline.generate(
                messages=[Message("system", "hi"), Message("user", prompt)]
            )
        action = "blocked" if policy == "block" else "redacted"
        found = sample(service, "bankllm_pii_redactions_total", kind="card", action=action)
    redacted = (Message("system", "hi"), Message("user", "my card [CARD] is lost"))
    assert memory.latest("remote").received[1:] == ([] if policy == "block" else [redacted])
    assert found == 1


async def test_a_refused_request_gets_its_row(start_service: ServiceFactory) -> None:
    async with start_service() as service:
        service.pipeline.refuse(InvalidRequest("prompt: field required"))
        rows = _requests(service)
        counted = sample(
            service, "bankllm_requests_total", model="mem", backend="memory", status="bad_request"
        )
    assert rows == [_row(status="bad_request", error_type="invalid_request", ttft_ms=None)]
    assert counted == 1


@pytest.mark.parametrize("streamed", [False, True])
async def test_an_out_of_scope_answer_is_the_approved_hand_off_counted_and_logged(
    start_service: ServiceFactory, streamed: bool
) -> None:
    async with start_service(active_model="mem-away") as service:
        if streamed:
            async with aclosing(service.pipeline.stream("weather tomorrow?")) as events:
                received = [event async for event in events]
            result = received[-1].result
            assert result is not None
            assert "".join(e.delta for e in received) == result.text
        else:
            result = await service.pipeline.generate("weather tomorrow?")
        rows = _requests(service)
        counted = sample(
            service,
            "bankllm_handoffs_total",
            model="mem-away",
            backend="memory",
            reason="out_of_scope",
        )
    handoff = IntentSet.load().handoffs["out_of_scope"]
    assert (result.intent, result.handoff, result.text) == (None, "out_of_scope", handoff)
    assert "sunny" not in result.text  # what the model wrote after the label is not shown
    assert [(r["intent"], r["handoff"]) for r in rows] == [(None, "out_of_scope")]
    assert counted == 1


@pytest.mark.parametrize(
    ("prompt", "messages", "where"),
    [
        (" \t\n ", None, "prompt"),
        (None, [Message("user", "hello"), Message("user", "\u3000 ")], "messages.1.content"),
    ],
)
async def test_white_space_alone_asks_nothing_and_is_refused(
    start_service: ServiceFactory,
    prompt: str | None,
    messages: list[Message] | None,
    where: str,
) -> None:
    async with start_service() as service:
        with pytest.raises(InvalidRequest) as refused:
            await service.pipeline.generate(prompt, messages=messages)
    assert refused.value.message == f"{where}: must contain more than white space"
