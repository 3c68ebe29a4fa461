"""The vLLM engine: an in-process `AsyncLLM` with LoRA enabled; every generation carries the
adapter's `LoRARequest`, streams deltas, and is aborted when its caller goes away.

vLLM starts its engine core in a child process by spawn: a script that serves must guard its
entry point with `if __name__ == "__main__":` (the `bankllm` console script does).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncGenerator
from typing import Any, cast

from app.backends.qlora.engine import Delta, EngineDied, Sampling, following, spelled
from app.backends.qlora.options import QLoRAOptions
from app.backends.token_scores import Scored

LORA_ID = 1  # one adapter per engine; vLLM caches it by this id


def engine_args(o: QLoRAOptions) -> Any:
    """vLLM's AsyncEngineArgs from our options (bitsandbytes 4-bit only where vLLM has it)."""
    from vllm import AsyncEngineArgs
    from vllm.config import StructuredOutputsConfig

    return AsyncEngineArgs(
        model=o.base_model,
        tokenizer=o.base_model,
        dtype=cast(Any, o.dtype),  # vLLM's Literal; ours is checked by Settings
        max_model_len=cast(Any, o.max_model_len),  # set by the adapter: ours or the model's own
        enable_lora=True,
        max_loras=1,
        max_lora_rank=cast(Any, o.max_lora_rank),
        quantization="bitsandbytes" if o.quantization == "bitsandbytes" else None,
        gpu_memory_utilization=o.gpu_memory_utilization,
        kv_cache_memory_bytes=o.kv_cache_bytes,
        disable_log_stats=True,
        logprobs_mode="raw_logprobs",  # a label's confidence: the model's, before any mask
        # llguidance, as the custom model's: in every lock, where xgrammar is not (CPU)
        structured_outputs_config=StructuredOutputsConfig(
            backend="guidance", disable_any_whitespace=True
        ),
    )


async def start_vllm(o: QLoRAOptions) -> VLLMEngine:
    from vllm.lora.request import LoRARequest
    from vllm.v1.engine.async_llm import AsyncLLM

    args = engine_args(o)
    engine = await asyncio.to_thread(AsyncLLM.from_engine_args, args)
    return VLLMEngine(engine, LoRARequest("bankllm", LORA_ID, o.adapter))


class VLLMEngine:
    def __init__(self, engine: Any, lora: Any):
        self._engine: Any = engine
        self._lora = lora

    async def stream(self, ids: list[int], sampling: Sampling) -> AsyncGenerator[Delta, None]:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        schema, lark = sampling.json_schema, sampling.lark
        shape = None
        if schema is not None:
            shape = StructuredOutputsParams(json=dict(schema))
        elif lark is not None:
            shape = StructuredOutputsParams(grammar=lark)
        params = SamplingParams(
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
            output_kind=RequestOutputKind.DELTA,
            structured_outputs=shape,
            logprobs=sampling.logprobs,
        )
        request_id = f"bankllm-{uuid.uuid4().hex}"
        generated, finished = 0, False
        engine = self._engine  # kept: close() may drop it while this stream is paused
        outputs = engine.generate(
            {"prompt_token_ids": ids}, params, request_id, lora_request=self._lora
        )
        try:
            async for out in outputs:  # EngineDeadError (or another) once its core died
                completion = out.outputs[0]
                generated += len(completion.token_ids)
                scored = _scored(completion, sampling.logprobs)
                if out.finished:
                    finished = True
                    length = completion.finish_reason == "length"
                    yield Delta(completion.text, generated, "length" if length else "stop", scored)
                    return
                if completion.text or scored:
                    yield Delta(completion.text, generated, scored=scored)
        except Exception as exc:
            if not engine.errored:
                raise
            finished = True  # a dead engine has nothing to abort
            raise EngineDied(f"the vLLM engine died ({type(exc).__name__})") from exc
        finally:
            await outputs.aclose()
            if not finished and not engine.errored:  # the caller left: free its KV cache now
                await engine.abort(request_id)

    async def choose(self, ids: list[int], continuations: list[list[int]]) -> tuple[int, float]:
        """A request a step, its one token held to `allowed_token_ids`, its log-probability
        vLLM's raw one (before the mask: `logprobs_mode`). Prompt logprobs would score a label
        whole in one request, but vLLM computes them wrongly with a LoRA (vllm#16668); prefix
        caching keeps each step to its new token."""
        path: list[int] = []
        logprob = 0.0
        while (index := spelled(path, continuations)) is None:
            token, step = await self._next_token([*ids, *path], following(path, continuations))
            path.append(token)
            logprob += step
        return index, math.exp(logprob)

    async def _next_token(self, ids: list[int], allowed: list[int]) -> tuple[int, float]:
        from vllm import SamplingParams

        params = SamplingParams(
            max_tokens=1, temperature=0.0, allowed_token_ids=allowed, logprobs=0
        )
        request_id = f"bankllm-choose-{uuid.uuid4().hex}"
        engine = self._engine
        final: Any = None
        outputs = engine.generate(
            {"prompt_token_ids": ids}, params, request_id, lora_request=self._lora
        )
        try:
            async for out in outputs:
                final = out
        except Exception as exc:
            if not engine.errored:
                raise
            raise EngineDied(f"the vLLM engine died ({type(exc).__name__})") from exc
        finally:
            await outputs.aclose()
            if (final is None or not final.finished) and not engine.errored:
                await engine.abort(request_id)
        if final is None or not final.outputs[0].token_ids:
            raise EngineDied("the vLLM engine ended a step of the label with no token")
        chosen = final.outputs[0]
        token = int(chosen.token_ids[0])
        return token, float(chosen.logprobs[0][token].logprob)

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await asyncio.to_thread(engine.shutdown)


def _scored(completion: Any, top: int | None) -> tuple[Scored, ...]:
    """The new tokens' raw log-probabilities (`logprobs_mode`), each with the `top` most
    likely tokens' (vLLM gives those and the sampled one, each with its rank)."""
    if top is None or not completion.logprobs:
        return ()
    return tuple(
        (
            int(token),
            float(places[token].logprob),
            tuple(
                (int(t), float(p.logprob))
                for t, p in sorted(places.items(), key=lambda item: item[1].rank)
                if p.rank <= top
            ),
        )
        for token, places in zip(completion.token_ids, completion.logprobs, strict=True)
    )
