"""A fake Gemini REST server for tests: the real SDK talks to it over real HTTP on 127.0.0.1.

It implements `POST /{v1,v1beta}/models/{model}:generateContent` and
`:streamGenerateContent?alt=sse` with Google's response and error shapes (the SDK 3.x calls
`v1`; earlier ones called `v1beta`), records every request
it receives, and plays the faults a test queues, one per request. Asked for JSON
(`responseMimeType`), it answers its reply as the choice object the service's schema describes:
`{"intent": ..., "confidence": ..., "reply": ...}`; where the schema holds `reply` to an object
(structured output), `reply` is an instance of that schema made from it (`instance`).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

API_KEY = "fake-gemini-key"
REPLY_FUNCTION = "bankllm_reply"  # the service's own answer, declared beside a caller's tools
REPLY = "intent: card_arrival\nYour card is on its way and usually arrives within 3 working days."
REPLY_TEXT = REPLY.split("\n", 1)[1]  # what the service answers: the reply, no intent line
CHOICE_CHUNKS = 18  # the chunks (the fake's tokens) of REPLY's JSON choice: `choice_json()`
ASK = {"prompt": "my card has not arrived", "max_tokens": 64, "temperature": 0}  # to /generate
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class Fault:
    """What the next request gets instead of a normal answer."""

    status: int | None = None  # answer with this HTTP status and Google's error JSON
    retry_delay: str | None = None  # google.rpc.RetryInfo.retryDelay, e.g. "0.05s"
    delay_s: float = 0.0  # wait before answering (a slow upstream)
    malformed: bool = False  # a 200 whose body is not JSON
    cut_after: int | None = None  # streams: drop the connection after this many chunks
    finish_reason: str | None = None  # end the reply with this finishReason (e.g. SAFETY)
    hold: threading.Event | None = None  # answer only once the test sets it (60 s at most)
    hold_after: int = 0  # streams: chunks sent before the hold


@dataclass
class Received:
    path: str
    key: str | None
    body: dict[str, Any]
    raw: bytes


@dataclass
class FakeGemini:
    reply: str = REPLY  # `intent: <label>` on its first line, then the reply
    confidence: float = 0.9  # the confidence its JSON answers state
    accepted_key: str = API_KEY  # set another to revoke the key the service holds
    faults: deque[Fault] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    # Offered tools: call the first the request allows (its arguments these, or made from its
    # schema), or answer in words through the service's reply function when `answers` is set
    # or the last turn holds a tool's result.
    tool_arguments: dict[str, Any] | None = None
    answers: bool = False
    parallel_calls: int = 1  # calls of that tool in one answer
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    def reset(self) -> None:
        self.reply, self.accepted_key, self.confidence = REPLY, API_KEY, 0.9
        self.tool_arguments, self.answers, self.parallel_calls = None, False, 1
        self.faults.clear()
        self.received.clear()

    def wait_received(self, count: int, timeout_s: float) -> bool:
        """Whether `count` requests have arrived within `timeout_s` (from any thread)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.received) >= count, timeout_s)

    def app(self) -> Starlette:
        routes = []
        for version in ("v1", "v1beta"):
            routes.append(Route(f"/{version}/models/{{call:path}}", self._handle, methods=["POST"]))
            routes.append(Route(f"/{version}/models/{{model}}", self._model, methods=["GET"]))
        return Starlette(routes=routes)

    async def _model(self, request: Request) -> Response:
        """models.get: enough to tell that the server is up."""
        name = request.path_params["model"]
        return JSONResponse({"name": f"models/{name}", "displayName": name})

    async def _handle(self, request: Request) -> Response:
        raw = await request.body()
        body = json.loads(raw)
        fault = self.faults.popleft() if self.faults else Fault()
        with self._arrived:
            key = request.headers.get("x-goog-api-key")
            self.received.append(Received(request.url.path, key, body, raw))
            self._arrived.notify_all()
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)  # the upstream is slow, by design of the test
        streamed = not request.url.path.endswith(":generateContent")
        if fault.hold is not None and not (streamed and fault.hold_after):
            await asyncio.to_thread(fault.hold.wait, 60)
        if request.headers.get("x-goog-api-key") != self.accepted_key:
            return _error(400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID")
        if fault.status is not None:
            return _error(fault.status, f"injected {fault.status}", retry_delay=fault.retry_delay)
        if fault.malformed:
            return Response("<html>upstream proxy error</html>", media_type="application/json")
        if "tools" in body:
            return self._call(body, streamed)
        generation = body.get("generationConfig", {})
        as_json = generation.get("responseMimeType") == "application/json"
        schema = generation.get("responseJsonSchema") or {}
        words = _chunks(self._choice(schema) if as_json else self.reply)
        limit = generation.get("maxOutputTokens") or len(words)
        finish = fault.finish_reason or ("MAX_TOKENS" if len(words) > limit else "STOP")
        words = words[:limit]
        prompt_tokens = len(json.dumps(body.get("contents", [])).split())
        if not streamed:
            return JSONResponse(_response("".join(words), finish, prompt_tokens, len(words)))
        return StreamingResponse(
            self._events(words, finish, prompt_tokens, fault), media_type="text/event-stream"
        )

    def _call(self, body: dict[str, Any], streamed: bool) -> Response:
        """A function call, as Gemini held to calling one (mode ANY) answers."""
        declared = {d["name"]: d for t in body["tools"] for d in t["functionDeclarations"]}
        allowed = body["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"]
        last = body["contents"][-1]["parts"]
        answered = any("functionResponse" in p for p in last)
        if REPLY_FUNCTION in allowed and (self.answers or answered):
            name, args = REPLY_FUNCTION, json.loads(choice_json(self.reply, self.confidence))
        else:
            name = next(n for n in allowed if n != REPLY_FUNCTION)
            function = declared[name]  # the SDK sends this one key in snake case; Google takes both
            schema = function.get("parametersJsonSchema") or function.get(
                "parameters_json_schema", {}
            )
            args = self.tool_arguments or instance(schema, schema.get("$defs", {}))
        calls = [
            {"functionCall": {"id": f"fc-{len(self.received)}-{i}", "name": name, "args": args}}
            for i in range(1 if name == REPLY_FUNCTION else self.parallel_calls)
        ]
        chunk = _response("", "STOP", len(json.dumps(body["contents"]).split()), 1)
        chunk["candidates"][0]["content"]["parts"] = calls
        if not streamed:
            return JSONResponse(chunk)
        event = f"data: {json.dumps(chunk)}\r\n\r\n".encode()
        return StreamingResponse(iter([event]), media_type="text/event-stream")

    def _choice(self, schema: dict[str, Any]) -> str:
        reply = schema.get("properties", {}).get("reply", {"type": "string"})
        if reply.get("type") == "string":
            return choice_json(self.reply, self.confidence)
        intent = self.reply.partition("\n")[0].removeprefix("intent: ")
        made = instance(reply, schema.get("$defs", {}))
        return json.dumps({"intent": intent, "confidence": self.confidence, "reply": made})

    async def _events(
        self, words: list[str], finish: str, prompt_tokens: int, fault: Fault
    ) -> AsyncIterator[bytes]:
        for i, word in enumerate(words):
            if fault.cut_after is not None and i == fault.cut_after:
                raise ConnectionAbortedError("the fake upstream drops the stream on purpose")
            if fault.hold is not None and fault.hold_after and i == fault.hold_after:
                await asyncio.to_thread(fault.hold.wait, 60)
            last = i == len(words) - 1
            chunk = _response(word, finish if last else None, prompt_tokens, i + 1)
            yield f"data: {json.dumps(chunk)}\r\n\r\n".encode()


def choice_json(reply: str = REPLY, confidence: float = 0.9) -> str:
    """A reply (`intent: <label>` then the text) as the JSON choice object Gemini is asked for."""
    line, _, text = reply.partition("\n")
    intent = line.removeprefix("intent: ")
    return json.dumps({"intent": intent, "confidence": confidence, "reply": text})


def instance(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """A value the schema accepts, as a model held to it would write one (the schemas the
    tests send: objects, arrays, enums, strings, numbers, booleans, references)."""
    if "$ref" in schema:
        return instance(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return instance(schema["anyOf"][0], defs)
    kind = schema.get("type", "object")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: instance(sub, defs) for name, sub in properties.items()}
    if kind == "array":
        return [instance(schema.get("items", {"type": "string"}), defs)]
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    return {"boolean": True, "null": None}.get(kind, "the card is on its way")


def _chunks(text: str) -> list[str]:
    """The reply in pieces of one word with its trailing space (a token, for the fake)."""
    pieces: list[str] = []
    for word in text.split(" "):
        pieces.append(word + " ")
    pieces[-1] = pieces[-1][:-1]
    return pieces


def _response(text: str, finish: str | None, prompt_tokens: int, output: int) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}}
    if finish is not None:
        candidate["finishReason"] = finish
    candidate["index"] = 0
    return {
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": output,
            "totalTokenCount": prompt_tokens + output,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "fake-response",
    }


def _error(
    status: int, message: str, reason: str | None = None, retry_delay: str | None = None
) -> JSONResponse:
    details: list[dict[str, Any]] = []
    if reason is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
            }
        )
    if retry_delay is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}
        )
    body = {
        "error": {
            "code": status,
            "message": message,
            "status": _STATUS_NAMES.get(status, "UNKNOWN"),
            "details": details,
        }
    }
    return JSONResponse(body, status_code=status)


def main() -> None:
    """Serve the fake on its own: `python -m tests.fake_gemini --port 8089`. The gemini profile
    talks to it with GEMINI_BASE_URL=http://127.0.0.1:8089 GEMINI_API_KEY=fake-gemini-key."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="A fake Gemini REST server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    args = parser.parse_args()
    uvicorn.run(FakeGemini().app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
