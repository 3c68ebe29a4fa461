"""Every admin action, written to the audit trail: the switch (gated when it names conditions)
and the shadow's changes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from app.backends.catalog import spec_version
from app.backends.protocol import ModelSpec
from app.banking.intents import IntentSet
from app.errors import (
    ModelNotFound,
    OneModelOnly,
    ServiceError,
    ShadowIsActive,
    SwitchInProgress,
    SwitchRefused,
)
from app.models.gate import (
    Requirements,
    Verdict,
    eval_examples,
    eval_verdict,
    evaluate_adapter,
    shadow_verdicts,
)
from app.models.loaded import LoadedAdapters
from app.models.shadow import Shadow
from app.models.switching import ActiveModel, SwitchResult
from app.telemetry.audit import Audit
from app.telemetry.benchlog import BenchmarkLog
from app.telemetry.shadow_stats import shadow_summary

# How a switch that passed its checks is made: (model, admin id) -> result. In one process,
# here; on Ray Serve, published to the fleet and made by every replica (`Admin.follow`).
SwitchTo = Callable[[str, str], Awaitable[SwitchResult]]


class Admin:
    def __init__(
        self,
        registry: dict[str, ModelSpec],
        model: ActiveModel,
        loaded: LoadedAdapters,
        shadow: Shadow,
        log: BenchmarkLog,
        intents: IntentSet,
        audit: Audit,
    ):
        self._registry = registry
        self._model = model
        self._loaded = loaded
        self._shadow = shadow
        self._log = log
        self._intents = intents
        # an evaluation's questions go under the same policy and timeout as a shadow's
        self._policy, self._timeout_s = shadow.options.policy, shadow.options.timeout_s
        self.audit = audit
        self._switch_to: SwitchTo = self._switch_here

    def switch_through(self, switch_to: SwitchTo) -> None:
        """Make the switches that pass their checks through `switch_to` (a fleet's), not here."""
        self._switch_to = switch_to

    async def switch(self, name: str, require: Requirements | None, by: str) -> SwitchResult:
        """Switch to `name`; with `require`, only once the candidate meets every condition."""
        previous = self._model.name
        spec = self._spec(name, "switch", previous, by)
        given = require.given() if require else None
        self.audit.asked("switch", by, previous, name, require=given)
        try:
            if require is None or name == previous:
                result = await self._switch_to(spec.name, by)
            else:
                result = await self._gated(spec, require, by)
        except SwitchRefused as exc:
            conditions = exc.details["conditions"]
            self.audit.write("switch", by, "refused", previous, name, conditions=conditions)
            raise
        except ServiceError as exc:
            self.audit.write("switch", by, "failed", previous, name, error_type=exc.type)
            raise
        except BaseException:  # a bug, or the admin's client left: the trail still closes
            self.audit.write("switch", by, "failed", previous, name, error_type="interrupted")
            raise
        self.audit.write("switch", by, "done", previous, name, load_ms=result.load_ms)
        await self._promoted(name, by)
        return result

    async def follow(self, name: str, by: str) -> SwitchResult:
        """Make here a switch asked of the whole fleet (checked by the replica that took it)."""
        previous = self._model.name
        try:
            result = await self._model.switch(name)
        except ServiceError as exc:
            self.audit.write("follow", by, "failed", previous, name, error_type=exc.type)
            raise
        if previous != name:
            self.audit.write("follow", by, "done", previous, name, load_ms=result.load_ms)
        await self._promoted(name, by)
        return result

    async def _switch_here(self, name: str, by: str) -> SwitchResult:
        return await self._model.switch(name)

    async def _promoted(self, name: str, by: str) -> None:
        if self._shadow.model == name:  # promoted: the candidate serves now, it shadows no one
            await self._shadow.clear("promoted")
            self.audit.write("shadow_clear", by, "done", name, None, reason="promoted")

    async def set_shadow(self, name: str, sample: float, by: str) -> None:
        spec = self._spec(name, "shadow_set", self._shadow.model, by)
        if self._model.mode == "drain_first":
            raise OneModelOnly("a shadow")
        if name == self._model.name:
            raise ShadowIsActive(
                f"{name!r} is the active model; a shadow is a candidate beside it",
                {"active": name},
            )
        previous, started = self._shadow.model, time.perf_counter()
        self.audit.asked("shadow_set", by, previous, name, sample=sample)
        try:
            await self._shadow.set(spec, sample)
        except ServiceError as exc:
            self.audit.write("shadow_set", by, "failed", previous, name, error_type=exc.type)
            raise
        load_ms = round((time.perf_counter() - started) * 1000, 1)
        self.audit.write("shadow_set", by, "done", previous, name, sample=sample, load_ms=load_ms)

    async def clear_shadow(self, by: str) -> None:
        previous = self._shadow.model
        self.audit.asked("shadow_clear", by, previous, None)
        await self._shadow.clear()
        self.audit.write("shadow_clear", by, "done", previous, None)

    async def shadow_report(self) -> dict[str, Any]:
        """The shadow now, and every shadow's figures over the log's newest rows."""
        rows = await asyncio.to_thread(self._log.shadow_rows)
        return {"shadow": self._shadow.state(), "shadows": shadow_summary(rows)}

    def _spec(self, name: str, action: str, previous: str | None, by: str) -> ModelSpec:
        """The registered model `name`; an unknown one is a failed action in the trail, which
        does not write the name: it is whatever the caller typed."""
        spec = self._registry.get(name)
        if spec is None:
            error = ModelNotFound(f"no model named '{name}'", {"models": sorted(self._registry)})
            self.audit.write(action, by, "failed", previous, None, error_type=error.type)
            raise error
        return spec

    async def _gated(self, spec: ModelSpec, require: Requirements, by: str) -> SwitchResult:
        """Check each condition (the evaluation last, and only if the others pass), then
        switch; the candidate an evaluation loaded stays loaded into the switch."""
        rows = await asyncio.to_thread(self._log.shadow_rows)
        version = spec_version(spec)  # a retrained checkpoint earns its own record
        rows = [r for r in rows if r.get("shadow_version") == version]
        verdicts = shadow_verdicts(require, shadow_summary(rows).get(spec.name))
        if require.min_eval_accuracy is not None and self._model.mode == "drain_first":
            raise OneModelOnly("an evaluation of the candidate")
        if self._model.switching:  # before an evaluation that could take minutes
            raise SwitchInProgress("another model switch is in progress; retry when it ends")
        # a bad CSV is a 422 before anything loads; read off the event loop
        examples = await asyncio.to_thread(eval_examples, require)
        if require.min_eval_accuracy is None:
            return await self._decide(spec, verdicts, by)
        if not all(v.passed for v in verdicts):
            return await self._decide(
                spec, [*verdicts, eval_verdict(require.min_eval_accuracy, None)], by
            )
        candidate = await self._loaded.acquire(spec)
        try:
            data = str(require.eval_data)
            report = await evaluate_adapter(
                candidate.adapter, self._intents, examples, data, self._policy, self._timeout_s
            )
            self._log.append(report.row())
            verdicts.append(eval_verdict(require.min_eval_accuracy, report))
            return await self._decide(spec, verdicts, by)
        finally:
            await self._loaded.release(candidate)

    async def _decide(self, spec: ModelSpec, verdicts: list[Verdict], by: str) -> SwitchResult:
        if not all(v.passed for v in verdicts):
            raise SwitchRefused(spec.name, [asdict(v) for v in verdicts])
        return await self._switch_to(spec.name, by)
