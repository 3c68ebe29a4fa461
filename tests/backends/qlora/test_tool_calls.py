"""Llama 3.1's tool calls: the grammar holds a reply to a valid call of an offered tool or to
prose; the reader turns a call's text into the call that vLLM's own `llama3_json` parser reads
from it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from llguidance.hf import from_tokenizer

from app.backends.grammar import TokenMask, compiled, lark_compiled
from app.backends.qlora.engine import Sampling
from app.backends.qlora.prompting import TemplateRefused, chat_ids
from app.backends.qlora.sampling import tool_sampling
from app.backends.qlora.tool_calls import CallReader
from app.backends.tools import Tool, Tools
from app.errors import InvalidRequest
from tests.tiny_llama import build_tokenizer

FREEZE = Tool(
    "freeze_card",
    "Freeze a card",
    {
        "type": "object",
        "properties": {"last4": {"type": "string", "pattern": "^[0-9]{4}$"}},
        "required": ["last4"],
        "additionalProperties": False,
    },
)
BALANCE = Tool("balance", "", {"type": "object", "properties": {}, "additionalProperties": False})
CALL = '{"name":"freeze_card","parameters":{"last4":"1234"}}'


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tokenizer()


def takes(tokenizer: Any, sampling: Sampling, text: str) -> bool:
    """Whether the sampling's grammar takes `text` whole, then the end of the sequence."""
    grammar_tokenizer = from_tokenizer(
        tokenizer, n_vocab=len(tokenizer), eos_token=tokenizer.eos_token_id
    )
    if sampling.json_schema is not None:
        grammar = compiled(sampling.json_schema)
    else:
        grammar = lark_compiled(sampling.lark or "")
    mask = TokenMask(grammar_tokenizer, grammar)
    for token in [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]:
        if not mask.allowed()[token]:
            return False
        mask.take(token)
    return True


@pytest.mark.parametrize(
    ("choice", "named", "text", "taken"),
    [
        ("auto", None, CALL, True),
        ("auto", None, "Your card is frozen.", True),
        ("auto", None, '{"name":"freeze_card","parameters":{"last4":"12"}}', False),
        ("auto", None, '{"name":"delete_account","parameters":{}}', False),
        ("auto", None, '{"name":"balance","parameters":{}}', True),
        ("required", None, "Your card is frozen.", False),
        ("required", None, CALL, True),
        ("required", "balance", CALL, False),
        ("required", "balance", '{"name":"balance","parameters":{}}', True),
    ],
)
def test_the_grammar_takes_valid_calls_of_the_tools_it_may_call_and_prose_only_under_auto(
    tokenizer: Any, choice: Any, named: str | None, text: str, taken: bool
) -> None:
    sampling = tool_sampling(Sampling(64), Tools((FREEZE, BALANCE), choice, named))
    assert takes(tokenizer, sampling, text) is taken


def test_parameters_the_grammar_library_cannot_compile_are_a_400_naming_tools() -> None:
    broken = Tool(
        "x", "", {"type": "object", "properties": {"a": {"type": "string", "pattern": "(("}}}
    )
    with pytest.raises(InvalidRequest) as raised:
        tool_sampling(Sampling(64), Tools((broken,), "required"))
    assert raised.value.details[0]["loc"] == ["body", "tools"]


@pytest.mark.parametrize(
    "chunks", [[CALL], ["{", '"name":"freeze_card",', '"parameters":{"last4":"1234"}}']]
)
def test_a_call_is_held_then_read_as_vllms_llama3_json_parser_reads_it(
    tokenizer: Any, chunks: list[str]
) -> None:
    reader = CallReader("qlora")
    assert [reader.feed(c) for c in chunks] == [""] * len(chunks)
    text, (call,) = reader.end(whole=True)
    assert (text, call.name, json.loads(call.arguments)) == ("", "freeze_card", {"last4": "1234"})
    assert call.id.startswith("call_")
    tool_parsers = pytest.importorskip("vllm.tool_parsers.llama_tool_parser")
    parsed = tool_parsers.Llama3JsonToolParser(tokenizer).extract_tool_calls("".join(chunks), None)
    (theirs,) = parsed.tool_calls
    assert (theirs.function.name, theirs.function.arguments) == (call.name, call.arguments)


def test_prose_passes_and_a_call_the_token_limit_cut_is_given_as_written() -> None:
    prose = CallReader("qlora")
    assert prose.feed("Your card ") + prose.feed("{is} frozen") == "Your card {is} frozen"
    assert prose.end(whole=True) == ("", ())
    cut = CallReader("qlora")
    assert cut.feed('{"name":"free') == ""
    assert cut.end(whole=False) == ('{"name":"free', ())


def test_turns_the_chat_template_refuses_are_a_template_refusal(tokenizer: Any) -> None:
    strict = build_tokenizer()
    strict.chat_template = "{{ raise_exception('This model only supports single tool-calls') }}"
    with pytest.raises(TemplateRefused, match="only supports single tool-calls"):
        chat_ids(strict, [("user", "freeze both cards")])
