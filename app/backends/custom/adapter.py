"""`custom`: our from-scratch GPT; concurrent requests share its forward passes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace

import llguidance
from tokenizers.decoders import DecodeStream

from app.backends.custom.gpt.batching import BatchDecoder, MaskFor, Row
from app.backends.custom.gpt.checkpoint import Checkpoint, load_checkpoint, read_config
from app.backends.custom.gpt.constrain import ANY_OBJECT, JsonGrammar, tokenizer_for
from app.backends.custom.gpt.dataset import ANSWER_PREFIX
from app.backends.custom.gpt.generate import Sampling
from app.backends.custom.gpt.tokenizer import EOS, encode_prompt, special_id
from app.backends.custom.options import CustomOptions
from app.backends.custom.token_queue import TokenQueue
from app.backends.grammar import SchemaRefused
from app.backends.logprobs import token_logprobs
from app.backends.machine_time import MachinePrice
from app.backends.protocol import (
    HANDOFF_BELOW,
    Conversation,
    FinishReason,
    ModelInfo,
    ModelSpec,
    Piece,
    ResponseFormat,
    SamplingParams,
    Usage,
    earlier_user_turns,
    handoff_threshold,
    user_text,
)
from app.backends.stops import StopScanner
from app.backends.token_scores import Scored
from app.banking.intents import IntentSet
from app.errors import InvalidRequest, ModelUnavailable

DEFAULT_MAX_BATCH = 16


def checkpoint_version(spec: ModelSpec) -> str:
    """The version named in the checkpoint's config, read without loading weights."""
    try:
        return str(read_config(spec.options_as(CustomOptions).checkpoint)["version"])
    except (OSError, KeyError, ValueError):
        return "unknown"


def unavailable_reason(spec: ModelSpec) -> str | None:
    path = spec.options_as(CustomOptions).checkpoint
    if not (path / "config.json").is_file():
        return f"no checkpoint at {path}; train one with `bankllm train --out {path}`"
    return None


class CustomAdapter:
    def __init__(self, spec: ModelSpec, intents: IntentSet):
        self._intents = intents
        options = spec.options_as(CustomOptions)
        self._path = options.checkpoint
        self._max_batch = options.max_batch or DEFAULT_MAX_BATCH
        self._compile = options.compile
        self._cpu_hour_usd = options.cpu_hour_usd
        self._info = ModelInfo(spec.name, spec.backend, checkpoint_version(spec))
        self._ckpt: Checkpoint | None = None
        self._decoder: BatchDecoder | None = None
        self._answer: AnswerShape | None = None
        self._grammar_tokenizer: llguidance.LLTokenizer | None = None

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def problem(self) -> str | None:
        return None

    @property
    def decoder(self) -> BatchDecoder | None:
        """The running decoder, once loaded (its `stepper.compiled` tells the fast path)."""
        return self._decoder

    async def load(self) -> None:
        self._ckpt = await asyncio.to_thread(load_checkpoint, self._path)
        self._decoder = BatchDecoder(
            self._ckpt.model,
            self._max_batch,
            self._info.name,
            restart=self._ckpt.restart_tokens,
            compile=self._compile,
        )
        below = handoff_threshold(self._ckpt.meta.get(HANDOFF_BELOW), f"{self._path}/config.json")
        self._answer = AnswerShape.of(self._ckpt)
        # Log-probabilities are the reply's tokens' alone: a checkpoint that writes its intent
        # line as free tokens (an older one) cannot tell them apart, and gives none.
        decided = bool(self._answer.then)
        machine = MachinePrice("CPU-s", self._decoder.threads, self._cpu_hour_usd)
        self._info = replace(
            self._info,
            version=self._ckpt.version,
            handoff_below=below,
            gives_logprobs=decided,
            machine=machine,
        )
        tokenizer, vocab = self._ckpt.tokenizer, self._ckpt.model.config.vocab_size
        self._grammar_tokenizer = tokenizer_for(
            tokenizer.to_str(), vocab, special_id(tokenizer, EOS)
        )

    async def stream(
        self, messages: Conversation, params: SamplingParams
    ) -> AsyncGenerator[Piece, None]:
        """Answers the latest user turn, read with the earlier ones (a checkpoint trained on
        follow-ups reads them; an older one, the latest alone). The intent is decided (the most
        likely label, whatever the sampling) and the sampling applies to the reply alone;
        `max_tokens` and the usage count the reply's tokens only."""
        if self._ckpt is None or self._decoder is None or self._answer is None:
            raise ModelUnavailable(f"model {self._info.name!r} is not loaded")
        tokenizer, answer = self._ckpt.tokenizer, self._answer
        ids = self._fitting(self.prompt_ids(messages))
        eos = special_id(tokenizer, EOS)
        tokens = TokenQueue()
        row = self._row(ids, params, tokens, eos)
        self._decoder.submit(row)
        decoder = DecodeStream(skip_special_tokens=True)
        scanner = StopScanner(params.stop)
        count = 0
        scored: list[Scored] = []  # of tokens whose text is not out yet
        finish: FinishReason = "length"
        # The intent line (the prompt's `intent: `, the label, its newline) goes out whole and
        # unscanned: the caller's stop strings apply to the reply, never cut the decided intent.
        line = answer.prefix_text
        try:
            while (token := await tokens.get()) is not None:
                count += 1
                if token == eos:
                    finish = "stop"
                    break
                text = decoder.step(tokenizer, token) or ""
                if count <= answer.hidden:
                    line += text
                    if count == answer.hidden:
                        yield Piece(line, confidence=row.chosen_p)
                else:
                    if row.logprobs is not None:  # every sampled token was scored
                        scored.append(row.scores[count - answer.hidden - 1])
                    if text and (text := scanner.feed(text)):
                        yield Piece(text, logprobs=token_logprobs(self._grammar_tokenizer, scored))
                        scored = []
                if scanner.stopped:
                    finish = "stop"
                    break
        finally:
            row.cancelled = True  # a stop string, an error or a cancelled request
        usage = Usage(len(ids), max(0, count - answer.hidden))
        if 0 < count < answer.hidden:  # it ended inside the intent line
            yield Piece(line, confidence=row.chosen_p)
        spelled = token_logprobs(self._grammar_tokenizer, scored)
        if tail := scanner.flush():
            yield Piece(tail, logprobs=spelled)
            spelled = ()
        yield Piece("", finish, usage, logprobs=spelled)

    def _row(self, ids: list[int], params: SamplingParams, tokens: TokenQueue, eos: int) -> Row:
        """The sequence the decoder runs: the label chosen from the labels, then the reply
        sampled (under the grammar of a structured reply), each token into `tokens`."""
        assert self._answer is not None
        return Row(
            ids,
            Sampling(params.temperature, params.top_p, params.seed),
            params.max_tokens + self._answer.hidden,
            tokens.emitter(),
            end_token=eos,
            choices=self._answer.labels,
            then=self._answer.then,
            grammar=self._grammar(params.response_format),
            logprobs=params.logprobs,
        )

    def _fitting(self, ids: list[int]) -> list[int]:
        """A prompt the model's context holds, with room for a token of answer."""
        assert self._ckpt is not None
        context = self._ckpt.model.config.block_size
        if len(ids) >= context:
            reason = f"{len(ids)} tokens; model {self._info.name!r} reads at most {context - 1}"
            raise InvalidRequest.fields((["prompt"], reason, len(ids)), kind="too_long")
        return ids

    def _grammar(self, shape: ResponseFormat | None) -> MaskFor | None:
        """The mask a structured reply is decoded under, given the label chosen; a schema
        the grammar library cannot compile is refused, naming why."""
        if shape is None or self._ckpt is None or self._grammar_tokenizer is None:
            return None
        try:
            schema = ANY_OBJECT if shape.schema is None else shape.schema
            grammar = JsonGrammar(self._grammar_tokenizer, schema)
        except SchemaRefused as exc:
            raise InvalidRequest.fields((["response_format"], str(exc), None)) from None
        except (TypeError, ValueError, AttributeError) as exc:  # no JSON Schema at all
            reason = f"not a JSON Schema this service reads ({exc})"
            raise InvalidRequest.fields((["response_format"], reason, None)) from None
        tokenizer = self._ckpt.tokenizer
        return lambda chosen: grammar.mask(
            None if chosen is None else tokenizer.id_to_token(chosen)
        )

    def prompt_ids(self, messages: Conversation) -> list[int]:
        """The tokens the model reads before its label: the latest user turn after the earlier
        ones, each with the intent its reply shows (an approved reply names its intent)."""
        if self._ckpt is None or self._answer is None:
            raise ModelUnavailable(f"model {self._info.name!r} is not loaded")
        room = self._ckpt.model.config.block_size - 1 - len(self._answer.prefix)
        earlier = earlier_user_turns(messages)
        established = [self._intents.intent_of_reply(reply) for _, reply in earlier]
        said = [text for text, _ in earlier]
        prompt = encode_prompt(self._ckpt.tokenizer, user_text(messages), said, room, established)
        return [*prompt, *self._answer.prefix]

    async def close(self) -> None:
        if self._decoder is not None:
            decoder, self._decoder = self._decoder, None
            await asyncio.to_thread(decoder.close)
        self._ckpt = None


@dataclass(frozen=True)
class AnswerShape:
    """How a checkpoint's answer starts. One trained to decode its reply from the label (its
    labels restart the context) is given `intent: ` in its prompt and chooses the label from
    its labels; the label and the newline after it are not the caller's tokens."""

    prefix: tuple[int, ...] = ()
    prefix_text: str = ""
    labels: tuple[int, ...] = ()
    then: tuple[int, ...] = ()  # the newline that ends the intent line, when it is one token

    @classmethod
    def of(cls, ckpt: Checkpoint) -> AnswerShape:
        if not ckpt.restart_tokens:  # an answer decoded freely, as it was trained
            return cls()
        tokenizer, labels = ckpt.tokenizer, tuple(sorted(ckpt.restart_tokens))
        prefix = tuple(tokenizer.encode(ANSWER_PREFIX, add_special_tokens=False).ids)
        label = tokenizer.id_to_token(labels[0])
        answer = tokenizer.encode(f"{ANSWER_PREFIX}{label}\nYes", add_special_tokens=False).ids
        after = answer[answer.index(labels[0]) + 1 :]
        newline = tuple(after[:1]) if after and tokenizer.decode(after[:1]) == "\n" else ()
        return cls(prefix, ANSWER_PREFIX, labels, newline)

    @property
    def hidden(self) -> int:
        """The answer's tokens that are not the caller's: the label and its newline."""
        return len(self.labels[:1]) + len(self.then)
