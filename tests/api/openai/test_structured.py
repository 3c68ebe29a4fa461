"""Structured outputs on /v1 (`response_format`): the custom model's reply always parses and
validates, whatever its sampling; a hand-off is a refusal; a model or a schema that cannot be
honoured is a 400 naming `response_format`, never prose."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ParsedChatCompletion
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from pydantic import BaseModel, Field

from app.backends.custom.gpt.constrain import MAX_ITEMS, MAX_STRING_CHARS
from app.banking.intents import IntentSet
from app.settings import Settings
from tests.conftest import ServeFactory
from tests.fake_gemini import FakeGemini, Fault
from tests.helpers import USER_KEY

pytestmark = pytest.mark.anyio
QUESTIONS = ["I still have not received my new card", "my card payment was declined"]


class CardAnswer(BaseModel):
    intent: str
    reply: str
    urgent: bool
    steps: list[str]
    fee: int = Field(ge=0, le=99)
    channel: Literal["app", "phone", "branch"]


def json_schema(schema: Any) -> Any:
    """`response_format` asking for JSON valid against `schema`."""
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


def ask(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


class Note(BaseModel):
    channel: Literal["app", "phone", "branch"]
    text: str


class GeminiAnswer(BaseModel):  # nested models: their definitions travel in `$defs`
    urgent: bool
    notes: list[Note]
    fee: int = Field(ge=0)


@asynccontextmanager
async def sdk_for(
    serve: ServeFactory, settings: Settings | None = None, **overrides: Any
) -> AsyncIterator[openai.AsyncOpenAI]:
    async with (
        serve(settings, **overrides) as (app, _, _service),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)) as http,
    ):
        yield openai.AsyncOpenAI(
            base_url="http://testserver/v1", api_key=USER_KEY, max_retries=0, http_client=http
        )


async def parsed_then_streamed(
    sdk: openai.AsyncOpenAI, model: str, shape: type[BaseModel]
) -> tuple[ParsedChatCompletion[Any], list[ChoiceDelta]]:
    """The first question parsed into `shape`, then asked for any JSON object, streamed."""
    whole = await sdk.chat.completions.parse(
        model=model, messages=ask(QUESTIONS[0]), response_format=shape
    )
    stream = await sdk.chat.completions.create(
        model=model,
        messages=ask(QUESTIONS[0]),
        response_format={"type": "json_object"},
        stream=True,
    )
    return whole, [chunk.choices[0].delta async for chunk in stream if chunk.choices]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
async def test_parse_returns_the_schema_s_object_with_the_decided_intent(
    serve: ServeFactory, temperature: float
) -> None:
    async with sdk_for(serve) as sdk:  # custom, checkpoint `a`
        answers = [
            await sdk.chat.completions.parse(
                model="custom",
                messages=ask(question),
                response_format=CardAnswer,
                temperature=temperature,
                seed=seed,
                max_tokens=400,
            )
            for question in QUESTIONS
            for seed in (1, 2)
        ]
    for answer in answers:
        message = answer.choices[0].message
        assert answer.choices[0].finish_reason == "stop"
        assert isinstance(message.parsed, CardAnswer)
        assert message.parsed.intent == answer.model_extra["bankllm"]["intent"]  # type: ignore[index]
        assert len(message.parsed.reply) <= MAX_STRING_CHARS  # unbounded strings are bounded
        assert len(message.parsed.steps) <= MAX_ITEMS


async def test_json_object_streams_an_object_with_the_intent_and_a_reply(
    serve: ServeFactory,
) -> None:
    async with sdk_for(serve) as sdk:
        whole = await sdk.chat.completions.create(
            model="custom", messages=ask(QUESTIONS[0]), response_format={"type": "json_object"}
        )
        stream = await sdk.chat.completions.create(
            model="custom",
            messages=ask(QUESTIONS[1]),
            response_format={"type": "json_object"},
            stream=True,
        )
        chunks = [chunk async for chunk in stream if chunk.choices]
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    for text, extension in [
        (whole.choices[0].message.content or "", whole.model_extra),
        (streamed, chunks[-1].model_extra),  # the last chunk carries the figures
    ]:
        answer = json.loads(text)
        assert set(answer) == {"intent", "reply"}
        assert answer["intent"] == extension["bankllm"]["intent"]  # type: ignore[index]


async def test_a_hand_off_asked_for_json_is_a_refusal(
    serve: ServeFactory, checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    doubting = tmp_path / "doubting"  # checkpoint `a`, handing off every answer it doubts
    shutil.copytree(checkpoints["a"], doubting)
    config = json.loads((doubting / "config.json").read_text())
    config["meta"]["handoff_below"] = 1.0
    (doubting / "config.json").write_text(json.dumps(config))
    async with sdk_for(serve, custom_checkpoint=doubting) as sdk:
        whole, deltas = await parsed_then_streamed(sdk, "custom", CardAnswer)
    handoff = IntentSet.load().handoffs["low_confidence"]
    message = whole.choices[0].message
    assert (message.parsed, message.content, message.refusal) == (None, None, handoff)
    assert "".join(d.refusal or "" for d in deltas) == handoff
    assert not any(d.content for d in deltas)


@pytest.mark.parametrize(
    ("settings", "response_format", "says"),
    [
        ({"active_model": "echo"}, {"type": "json_object"}, "'echo' (echo) cannot constrain"),
        (
            {},
            {
                "type": "json_schema",
                "json_schema": {"name": "bad", "schema": {"$ref": "#/$defs/missing"}},
            },
            "response_format: ",
        ),
        ({}, {"type": "json_schema"}, "response_format.json_schema.json_schema: Field required"),
    ],
)
async def test_what_cannot_be_honoured_is_a_400_naming_response_format(
    serve: ServeFactory, settings: dict[str, Any], response_format: dict[str, Any], says: str
) -> None:
    async with sdk_for(serve, **settings) as sdk:
        with pytest.raises(openai.BadRequestError) as raised:
            await sdk.chat.completions.create(
                model=settings.get("active_model", "custom"),
                messages=ask(QUESTIONS[0]),
                extra_body={"response_format": response_format},
            )
    error = raised.value.response.json()["error"]
    assert error["param"].split(".")[0] == "response_format"
    assert says in error["message"]


async def test_gemini_holds_its_reply_to_the_schema_inside_its_choice(
    serve: ServeFactory, gemini_settings: Callable[..., Settings], fake_gemini: FakeGemini
) -> None:
    async with sdk_for(serve, gemini_settings(active_model="gemini")) as sdk:
        whole, streamed = await parsed_then_streamed(sdk, "gemini", GeminiAnswer)
        deltas = [delta.content or "" for delta in streamed]
    schemas = [r.body["generationConfig"]["responseJsonSchema"] for r in fake_gemini.received]
    sent = next(s for s in schemas if "properties" in s["properties"]["reply"])  # the parse
    assert sent["properties"]["intent"]["enum"]  # the choice, with the caller's schema inside
    assert sent["properties"]["reply"]["properties"]["notes"]["items"] == {"$ref": "#/$defs/Note"}
    assert "Note" in sent["$defs"]
    assert whole.choices[0].message.parsed == GeminiAnswer(
        urgent=True, notes=[Note(channel="app", text="the card is on its way")], fee=0
    )
    assert whole.model_extra["bankllm"]["intent"] == "card_arrival"  # type: ignore[index]
    assert json.loads("".join(deltas)) == {}  # any object: the fake writes an empty one


async def test_a_hand_written_schema_with_optional_fields_and_plain_requests_share_a_batch(
    serve: ServeFactory,
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "intent": {"type": "string", "pattern": "^[a-z_]+$"},  # the label fits: fixed
            "name": {"type": "string", "maxLength": 16},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "tags": {  # a map: its keys bounded too
                "type": "object",
                "additionalProperties": {"type": "boolean"},
                "maxProperties": 2,
            },
        },
        "required": ["intent", "name"],  # open, with optional fields
    }
    response_format: Any = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    async with sdk_for(serve) as sdk:
        structured = [
            sdk.chat.completions.create(
                model="custom",
                messages=ask(question),
                response_format=response_format,
                max_tokens=400,
            )
            for question in QUESTIONS * 2
        ]
        plain = [
            sdk.chat.completions.create(model="custom", messages=ask(q), temperature=0)
            for q in QUESTIONS
        ]
        answers = await asyncio.gather(*structured, *plain)  # rows of one running batch
    for answer in answers[: len(structured)]:
        assert answer.choices[0].finish_reason == "stop"  # within the tiny model's context
        parsed = json.loads(answer.choices[0].message.content or "")
        assert parsed["intent"] == answer.model_extra["bankllm"]["intent"]  # type: ignore[index]
        assert isinstance(parsed["name"], str)
        assert set(parsed) <= set(schema["properties"])
    for answer in answers[len(structured) :]:
        with pytest.raises(json.JSONDecodeError):  # prose, as asked
            json.loads(answer.choices[0].message.content or "")


@pytest.mark.parametrize(
    "schema",
    [{"type": {"a": 1}}, {"type": "string", "minLength": "5"}, {"type": [{}]}],
)
async def test_what_is_no_json_schema_is_a_400(serve: ServeFactory, schema: Any) -> None:
    async with sdk_for(serve) as sdk:
        with pytest.raises(openai.BadRequestError) as raised:
            await sdk.chat.completions.create(
                model="custom",
                messages=ask(QUESTIONS[0]),
                response_format=json_schema(schema),
            )
    assert raised.value.response.json()["error"]["param"] == "response_format"


async def test_a_fallback_that_cannot_format_leaves_the_upstream_s_failure(
    serve: ServeFactory, gemini_settings: Callable[..., Settings], fake_gemini: FakeGemini
) -> None:
    settings = gemini_settings(active_model="gemini", fallback_model="echo")
    async with sdk_for(serve, settings) as sdk:
        fake_gemini.faults.extend([Fault(status=503)] * 3)
        with pytest.raises(openai.APIStatusError) as raised:
            await sdk.chat.completions.create(
                model="gemini",
                messages=ask(QUESTIONS[0]),
                response_format={"type": "json_object"},
            )
    assert raised.value.status_code == 502  # gemini's failure, not a 400 the caller caused
    assert raised.value.response.json()["error"]["code"] == "upstream_error"


async def test_a_gemini_schema_that_refers_outside_its_definitions_is_a_400(
    serve: ServeFactory, gemini_settings: Callable[..., Settings], fake_gemini: FakeGemini
) -> None:
    schema: Any = {"type": "object", "properties": {"a": {"$ref": "#/properties/b"}, "b": {}}}
    async with sdk_for(serve, gemini_settings(active_model="gemini")) as sdk:
        with pytest.raises(openai.BadRequestError) as raised:
            await sdk.chat.completions.create(
                model="gemini",
                messages=ask(QUESTIONS[0]),
                response_format=json_schema(schema),
            )
    error = raised.value.response.json()["error"]
    assert (error["param"], "#/properties/b" in error["message"]) == ("response_format", True)
