"""The floor for benchmarks/overhead.py: a bare FastAPI app answering /generate with the same
fixed JSON completion as our `echo` model, with no auth, validation, metrics or log."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI()
ANSWER = {
    "id": "gen-0",
    "model": "echo",
    "backend": "echo",
    "version": "fixed-reply-1",
    "text": "This is the echo model. It answers the same words to every prompt.",
    "intent": "card_arrival",
    "finish_reason": "stop",
    "prompt_tokens": 6,
    "completion_tokens": 15,
    "latency_ms": 0.1,
    "ttft_ms": 0.05,
}


@app.post("/generate")
async def generate() -> dict[str, Any]:
    return ANSWER


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
