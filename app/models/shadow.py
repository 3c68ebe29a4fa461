"""Shadow traffic: a sampled share of live requests is asked again of a candidate model loaded
beside the active one. Its answer reaches no one; its intent is compared with the live one's,
and one `shadow` row per mirrored request records both sides (figures, never text)."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from app.backends.catalog import is_remote
from app.backends.protocol import Message, ModelSpec, SamplingParams
from app.banking.intents import IntentSet, choice
from app.banking.pii import Policy
from app.models.asking import ModelReply, ask_once
from app.models.loaded import Loaded, LoadedAdapters
from app.models.mirror import Mirror
from app.settings import Settings
from app.telemetry.benchlog import BenchmarkLog
from app.telemetry.clock import utc_now
from app.telemetry.metrics import Metrics
from app.telemetry.record import RequestRecord

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowOptions:
    policy: Policy  # CLOUD_PII_POLICY: a cloud shadow gets what a live cloud request would
    timeout_s: float  # REQUEST_TIMEOUT_S, for the shadow's answer too
    queue: int  # SHADOW_QUEUE: mirrored requests waiting; beyond it samples are dropped
    max_cost_usd: float | None  # SHADOW_MAX_COST_USD: a UTC day's spend on a paid shadow
    seed: int | None  # SHADOW_SEED: a fixed sampling sequence (tests, replays)
    concurrency: int = 1  # SHADOW_CONCURRENCY: mirrored requests answered at once
    window_s: float = 0.0  # SHADOW_BATCH_WINDOW_S: how long a batch waits to fill

    @classmethod
    def of(cls, settings: Settings) -> ShadowOptions:
        return cls(
            settings.cloud_pii_policy,
            settings.request_timeout_s,
            settings.shadow_queue,
            settings.shadow_max_cost_usd,
            settings.shadow_seed,
            settings.shadow_concurrency,
            settings.shadow_batch_window_s,
        )


class Shadow:
    """The shadow model, its sampling, its queue and the one task that answers from it."""

    def __init__(
        self,
        loaded: LoadedAdapters,
        intents: IntentSet,
        metrics: Metrics,
        log: BenchmarkLog,
        options: ShadowOptions,
    ):
        self._loaded = loaded
        self._intents = intents
        self._metrics = metrics
        self._log = log
        self._options = self.options = options
        self._random = random.Random(options.seed)
        self._held: Loaded | None = None
        self.sample = 0.0
        self._queue: asyncio.Queue[Mirror] = asyncio.Queue(options.queue)
        self._worker: asyncio.Task[None] | None = None  # answers the queue, batch by batch
        self._changing = asyncio.Lock()  # one set, clear or close at a time
        self._closed = False
        self._spent: tuple[str, float] = ("", 0.0)  # (UTC day, dollars spent on it)
        self.dropped: dict[str, int] = {}  # by reason, since this process started

    @property
    def model(self) -> str | None:
        return self._held.name if self._held else None

    @property
    def spent_today_usd(self) -> float:
        day, spent = self._spent
        return spent if day == _today() else 0.0

    def state(self) -> dict[str, Any]:
        """What GET /shadow says of the shadow now (its figures come from the log's rows)."""
        return {
            "model": self.model,
            "sample": self.sample if self._held else None,
            "queued": self._queue.qsize(),
            "dropped": dict(sorted(self.dropped.items())),
            "spent_today_usd": round(self.spent_today_usd, 6),
            "max_cost_usd": self._options.max_cost_usd,
        }

    async def set(self, spec: ModelSpec, sample: float) -> None:
        """Mirror `sample` of live requests to `spec`'s model (loaded now unless it is)."""
        async with self._changing:
            if self._closed:
                return
            if self._held is not None and self._held.name == spec.name:
                self.sample = sample
                return
            new = await self._loaded.acquire(spec)  # ModelUnavailable leaves the old one be
            await self._let_go("replaced")
            self._held, self.sample = new, sample
            if self._worker is None:
                self._worker = asyncio.create_task(self._answer_queued(), name="shadow")

    async def clear(self, reason: str = "stopped") -> None:
        async with self._changing:
            await self._let_go(reason)

    async def settled(self) -> None:
        """Resolves once every mirrored request offered so far has its shadow answer."""
        await self._queue.join()

    async def close(self) -> None:
        async with self._changing:
            self._closed = True
            await self._let_go("stopped")
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    def offer(
        self,
        record: RequestRecord,
        conversation: tuple[Message, ...],
        params: SamplingParams,
    ) -> Mirror | None:
        """Called once the live answer has its first piece: the request, mirrored if it is
        sampled (and not dropped), else None. Never waits."""
        held = self._held
        if held is None or record.model is None or record.model.name == held.name:
            return None
        if self._random.random() >= self.sample:
            return None
        if self._capped(held):
            self._drop("cost_cap")
            return None
        # the shadow is judged by its intent: asked in prose, whatever format, tools or
        # log-probabilities the caller asked for, so a shadow that cannot honour them is not
        # counted as failing
        params = replace(params, response_format=None, tools=None, logprobs=None)
        mirror = Mirror(self.compared, held, record, conversation, params)
        try:
            self._queue.put_nowait(mirror)
        except asyncio.QueueFull:
            self._drop("queue_full")
            return None
        return mirror

    def compared(self, mirror: Mirror, answer: ModelReply) -> None:
        """Both sides are done: count and write the pair."""
        live = mirror.record
        info = mirror.loaded.adapter.info
        both = live.status == "ok" and answer.status == "ok"
        chose = choice(live.intent, live.handoff)
        agree = both and chose is not None and chose == choice(answer.intent, answer.handoff)
        metrics = self._metrics
        metrics.shadow.requests.labels(info.name, answer.status).inc()
        if both:
            metrics.shadow.agreement.labels(info.name, str(agree).lower()).inc()
        assert live.model is not None
        self._log.append(
            {
                "ts": utc_now(),
                "type": "shadow",
                "request_id": live.request_id,
                "model": live.model.name,
                "version": live.model.version,
                "shadow_model": info.name,
                "shadow_version": info.version,
                "status": live.status,
                "shadow_status": answer.status,
                "shadow_error_type": answer.error_type,
                "intent": live.intent,
                "shadow_intent": answer.intent,
                "handoff": live.handoff,
                "shadow_handoff": answer.handoff,
                "agree": agree if both else None,
                "label": live.label,
                "latency_ms": round(live.latency_s * 1000, 2),
                "shadow_latency_ms": answer.latency_ms,
                "completion_tokens": live.usage.completion_tokens,
                "shadow_completion_tokens": answer.completion_tokens,
                "shadow_cost_usd": answer.cost_usd,
            }
        )

    async def _let_go(self, reason: str) -> None:
        held, self._held = self._held, None
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
            self._drop(reason, held.name if held else "none")
        if held is not None:
            await self._loaded.release(held)

    def _drop(self, reason: str, shadow: str | None = None) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self._metrics.shadow.dropped.labels(shadow or self.model or "none", reason).inc()

    async def _answer_queued(self) -> None:
        """Answer the queue in batches: up to SHADOW_CONCURRENCY samples, gathered for at most
        SHADOW_BATCH_WINDOW_S after the first, answered together. A custom shadow decodes them
        as one batch, so it costs the live path a step per batch, not per sample."""
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            until = loop.time() + self._options.window_s
            while len(batch) < self._options.concurrency and (left := until - loop.time()) > 0:
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
            await asyncio.gather(*(self._answer_one(m) for m in batch))

    async def _answer_one(self, mirror: Mirror) -> None:
        try:
            if self._capped(mirror.loaded):  # the cap was reached while it waited
                self._drop("cost_cap", mirror.loaded.name)
            else:
                mirror.answered(await self._answer(mirror))
        except Exception:  # a fault in one comparison must not stop the mirroring
            logger.exception("comparing a mirrored request failed")
        finally:
            self._queue.task_done()

    def _capped(self, loaded: Loaded) -> bool:
        cap = self._options.max_cost_usd
        return (
            cap is not None
            and is_remote(loaded.adapter.info.backend)
            and (self.spent_today_usd >= cap)
        )

    async def _answer(self, mirror: Mirror) -> ModelReply:
        """The shadow's answer to a mirrored request, with the live request's parameters."""
        options = self._options
        async with mirror.loaded.lease() as adapter:
            reply = await ask_once(
                adapter,
                mirror.conversation,
                mirror.params,
                self._intents,
                options.policy,
                options.timeout_s,
                mirror.record,
            )
        self._metrics.shadow.latency.labels(mirror.loaded.name).observe(reply.latency_ms / 1000)
        if reply.cost_usd:
            day, spent = self._spent
            today = _today()
            self._spent = (day, spent + reply.cost_usd) if day == today else (today, reply.cost_usd)
        return reply


def _today() -> str:
    return datetime.now(UTC).date().isoformat()
