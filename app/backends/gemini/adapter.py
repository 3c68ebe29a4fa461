"""`gemini`: Google's model through the official google-genai SDK (async client).

Every request streams (`generate_content_stream`), the warm-up included. Retries: the SDK's
`HttpRetryOptions` retries 408 and 5xx and transport errors with exponential backoff and
jitter; a 429 is retried here, waiting the delay Google asks for (`RetryInfo.retryDelay` or
`Retry-After`) when it is at most GEMINI_MAX_RETRY_WAIT_S, the SDK's backoff otherwise. A
circuit breaker fails fast after repeated failures. Every failure leaves as an `UpstreamError`
subclass that says what happened.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar, cast

import httpx
import tenacity
from pydantic import ValidationError

from app.backends.gemini.breaker import CircuitBreaker
from app.backends.gemini.calls import CallsReader, answer_shape, contents
from app.backends.gemini.choice import (
    CHOICE_TOKENS,
    ChoiceReader,
    choice_pieces,
    choice_schema,
)
from app.backends.gemini.options import GeminiOptions
from app.backends.gemini.reply import finish_reason, text_and_reason, usage_of
from app.backends.gemini.upstream import (
    RETRY_STATUS_CODES,
    ServerDelay,
    from_status,
    headers_of,
    malformed,
    server_delay_s,
)
from app.backends.protocol import (
    Conversation,
    ModelInfo,
    ModelSpec,
    Piece,
    SamplingParams,
)
from app.backends.stops import StopScanner
from app.banking.intents import IntentSet
from app.errors import (
    ModelUnavailable,
    UpstreamAuthRejected,
    UpstreamError,
    UpstreamRefused,
    UpstreamTimeout,
)

if TYPE_CHECKING:
    from google.genai import Client, types

T = TypeVar("T")
_attempts: ContextVar[list[int] | None] = ContextVar("gemini_attempts", default=None)


async def _count_attempt(request: Any) -> None:
    """An httpx2 request hook: counts the attempts of the request that runs in this task."""
    if (counter := _attempts.get()) is not None:
        counter[0] += 1


class GeminiAdapter:
    def __init__(self, spec: ModelSpec, intents: IntentSet):
        self._o = spec.options_as(GeminiOptions)
        self._info = ModelInfo(
            spec.name, spec.backend, self._o.model, self._o.handoff_below, calls_tools=True
        )
        self._breaker = CircuitBreaker(
            spec.name, self._o.breaker_failures, self._o.breaker_cooldown_s
        )
        self._system = intents.choice_prompt()
        self._choices = choice_schema(intents)
        self._labels = frozenset(intents.answer_labels)
        self._client: Client | None = None
        self._auth_problem: str | None = None

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def problem(self) -> str | None:
        """Why this model cannot serve now (key rejected, circuit open), or None."""
        return self._auth_problem or self._breaker.problem

    async def load(self) -> None:
        import httpx2
        from google import genai
        from google.genai import types

        key = self._o.api_key.get_secret_value() if self._o.api_key else ""
        retry = types.HttpRetryOptions(
            attempts=self._o.retry_attempts,
            initial_delay=self._o.retry_initial_s,
            max_delay=self._o.retry_max_s,
            exp_base=2.0,
            jitter=1.0,
            http_status_codes=[c for c in RETRY_STATUS_CODES if c != 429],  # 429: see stream
        )
        self._client = genai.Client(
            api_key=key,
            http_options=types.HttpOptions(
                base_url=self._o.base_url,
                timeout=int(self._o.timeout_s * 1000),
                retry_options=retry,
                # An explicit httpx2 transport keeps the SDK off aiohttp even where that is
                # installed (vLLM brings it): its timeouts and connection errors differ.
                async_client_args={
                    "transport": httpx2.AsyncHTTPTransport(),
                    "event_hooks": {"request": [_count_attempt]},
                },
            ),
        )

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aio.aclose()
            client.close()

    async def stream(
        self, messages: Conversation, params: SamplingParams
    ) -> AsyncGenerator[Piece, None]:
        client = self._ready()
        system = "\n\n".join([self._system, *(m.content for m in messages if m.role == "system")])
        config = self._config(params, system)
        first, chunks = await self._guarded(lambda: self._opened(client, messages, config))
        calls = CallsReader(self._info.name, self._labels) if params.tools is not None else None
        structured = params.response_format is not None
        choice = calls or ChoiceReader(self._info.name, self._labels, structured)
        scanner = StopScanner(params.stop)
        reason: str | None = None
        last = first
        count = 0
        try:
            chunk: Any = first
            while chunk is not None:
                last = chunk
                text, reason = text_and_reason(self._info.name, chunk)
                if calls is not None:
                    calls.see(chunk)
                if text:
                    count += 1
                    for piece in choice_pieces(*choice.feed(text), scanner):
                        yield piece
                    if scanner.stopped:
                        break
                # The SDK parses chunks already buffered without giving the loop a turn: a
                # fast upstream's whole reply would run as one slice, and 32 of them held the
                # liveness probe for 2 s. One turn a chunk keeps every request's slice short.
                await asyncio.sleep(0)
                chunk = await self._translated(anext(chunks, None), [count])
            if not scanner.stopped:
                if reason is None:
                    raise UpstreamError(f"{self._info.name}'s stream ended without a finish reason")
                finish = finish_reason(self._info.name, reason)
                for piece in choice_pieces(*choice.end(finish == "stop"), scanner):
                    yield piece
                if tail := scanner.flush():
                    yield Piece(tail)
            finish = "stop" if scanner.stopped else finish
            made = calls.calls if calls is not None else ()
            yield Piece("", finish, usage_of(last, count, self._o.cost_usd), tool_calls=made)
        except UpstreamError as exc:
            if not isinstance(exc, UpstreamRefused):
                self._breaker.failed(probe=False)  # a stream that broke off counts against it
            raise
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    async def _opened(
        self, client: Client, messages: Conversation, config: types.GenerateContentConfig
    ) -> tuple[types.GenerateContentResponse, AsyncIterator[Any]]:
        """A stream of the answer, and its first chunk."""
        chunks = await client.aio.models.generate_content_stream(
            model=self._o.model, contents=cast(Any, contents(messages)), config=config
        )
        try:
            return await anext(chunks), chunks
        except StopAsyncIteration:
            raise UpstreamError(f"{self._info.name} sent an empty stream") from None
        except BaseException:
            await chunks.aclose()  # type: ignore[attr-defined]  # release the connection
            raise

    def _ready(self) -> Client:
        if self._client is None:
            raise ModelUnavailable(f"model {self._info.name!r} is not loaded")
        return self._client

    def _config(self, params: SamplingParams, system: str) -> types.GenerateContentConfig:
        from google.genai import types

        budget = self._o.thinking_budget
        thinking = None if budget is None else types.ThinkingConfig(thinking_budget=budget)
        # The caller's stop strings are the reply's, cut here: in the object, one would cut it.
        return types.GenerateContentConfig(
            system_instruction=system,
            max_output_tokens=params.max_tokens + CHOICE_TOKENS,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            thinking_config=thinking,
            # the caller runs its tools: skip the SDK's function-calling loop and its log line
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            **answer_shape(params, self._choices),
        )

    async def _guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        """One call through the breaker and the 429 retries, translated to our errors."""
        probe = self._breaker.admit()
        counter = [0]
        token = _attempts.set(counter)
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self._o.retry_attempts),
            retry=tenacity.retry_if_exception(self._retry_429),
            wait=ServerDelay(
                tenacity.wait_exponential_jitter(
                    initial=self._o.retry_initial_s, max=self._o.retry_max_s, jitter=1.0
                )
            ),
            reraise=True,
        )

        async def attempt() -> T:
            return await call()

        try:
            result: T = await self._translated(retrying(attempt), counter)
        except UpstreamRefused:
            self._auth_problem = None  # it answered us: the key works and the model is up
            self._breaker.succeeded(probe)
            raise
        except UpstreamError as exc:
            if isinstance(exc, UpstreamAuthRejected):
                self._auth_problem = exc.message
            self._breaker.failed(probe)
            raise
        except BaseException:
            self._breaker.abandoned(probe)
            raise
        finally:
            _attempts.reset(token)
        self._auth_problem = None
        self._breaker.succeeded(probe)
        return result

    def _retry_429(self, exc: BaseException) -> bool:
        """Retry a 429 unless the server asks for a longer wait than we may spend."""
        from google.genai import errors

        if not isinstance(exc, errors.APIError) or exc.code != 429:
            return False
        delay = server_delay_s(exc.details, headers_of(exc))
        return delay is None or delay <= self._o.max_retry_wait_s

    async def _translated(self, awaitable: Awaitable[T], attempts: list[int]) -> T:
        """Await, turning what the SDK and its transports raise into our UpstreamErrors."""
        import httpx2
        from google.genai import errors

        name = self._info.name
        try:
            return await awaitable
        except errors.APIError as exc:
            raise from_status(name, exc.code, exc.details, headers_of(exc), attempts[0]) from exc
        except (httpx2.TimeoutException, httpx.TimeoutException, TimeoutError) as exc:
            raise UpstreamTimeout(
                f"{name} did not answer within GEMINI_TIMEOUT_S={self._o.timeout_s:g} s",
                {"attempts": attempts[0]},
            ) from exc
        except (httpx2.TransportError, httpx.TransportError) as exc:
            raise UpstreamError(
                f"{name} could not be reached or broke off: {type(exc).__name__}: {exc}",
                {"attempts": attempts[0]},
            ) from exc
        except (errors.UnknownApiResponseError, json.JSONDecodeError, ValidationError) as exc:
            raise malformed(name, exc) from exc
