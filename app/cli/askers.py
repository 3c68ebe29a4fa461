"""The ways `bankllm eval` asks a model: through a service of its own, or a running one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from app.banking.intents import IntentSet
from app.errors import ServiceError
from app.evaluation.evaluate import Ask, ExampleAnswer
from app.evaluation.loadtest import error_of
from app.service import Service
from app.serving.pipeline import RequestContext
from app.settings import Settings


@asynccontextmanager
async def in_process(
    settings: Settings, intents: IntentSet, model: str, max_tokens: int
) -> AsyncIterator[Ask]:
    """Ask `model` through a service of our own (its requests go to the benchmark log)."""
    service = Service(settings.model_copy(update={"active_model": model}), intents)
    await service.start()
    try:
        if service.active is None:
            raise RuntimeError(f"model {model!r} could not be loaded (see the log above)")

        async def ask(text: str, label: str) -> ExampleAnswer:
            try:
                origin = RequestContext(label=label)
                r = await service.pipeline.generate(
                    text, origin=origin, max_tokens=max_tokens, temperature=0.0
                )
            except ServiceError as exc:
                info = service.active
                return ExampleAnswer(
                    None,
                    "",
                    0.0,
                    0,
                    model,
                    info.backend if info else "?",
                    info.version if info else "?",
                    exc.type,
                )
            return ExampleAnswer(
                r.intent,
                r.text,
                r.latency_ms,
                r.completion_tokens,
                r.model,
                r.backend,
                r.version,
                handoff=r.handoff,
                confidence=r.confidence,
            )

        yield ask
    finally:
        await service.close()


@asynccontextmanager
async def over_http(
    url: str, model: str | None, max_tokens: int, api_key: str | None, admin_key: str | None
) -> AsyncIterator[Ask]:
    """Ask a running service; with `model`, switch it to that model first (admin key)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as client:
        listed = await client.get("/models")
        if listed.status_code != 200:
            raise SystemExit(f"{url}: {error_of(listed)}")
        active = listed.json()["active"]
        if model and model != active:
            admin = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
            response = await client.post("/switch", json={"model": model}, headers=admin)
            if response.status_code != 200:
                raise SystemExit(f"could not switch {url} to {model!r}: {error_of(response)}")

        async def ask(text: str, label: str) -> ExampleAnswer:
            body = {"prompt": text, "max_tokens": max_tokens, "temperature": 0, "label": label}
            response = await client.post("/generate", json=body)
            if response.status_code != 200:
                error = error_of(response)
                return ExampleAnswer(None, "", 0.0, 0, model or active, "?", "?", error)
            r = response.json()
            return ExampleAnswer(
                r["intent"],
                r["text"],
                r["latency_ms"],
                r["completion_tokens"],
                r["model"],
                r["backend"],
                r["version"],
                handoff=r.get("handoff"),
                confidence=r.get("confidence"),
            )

        yield ask
