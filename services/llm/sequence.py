"""One generation's state between forward passes, shared by both engines.

An engine runs the model; a `Sequence` decides what each set of logits means for its request: which tokens are
never sampled, the OpenAI penalties, the JSON grammar (and its budget guarantee), seeded sampling, the stop
tokens and stop sequences, and the text deltas that are safe to stream. Because the decisions live here and not
in a token loop, the llama.cpp engine can advance many sequences with one batched forward pass while the
transformers engine advances one, and both answer the same request with the same rules.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from services.llm.constrained import GrammarLibrary, JsonConstraint
from services.llm.decoding import IncrementalDecoder, StopSequences, sample_token
from services.llm.matcher import GrammarMatcher
from shared.logs import log_fields

logger = logging.getLogger(__name__)

FINISH_STOP = "stop"
FINISH_LENGTH = "length"
FINISH_CANCELLED = "cancelled"


@dataclass(frozen=True)
class GenerationRequest:
    """One generation, validated: the prompt is already tokenised (see the engine's `encode_prompt`)."""

    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    grammar: GrammarMatcher | None = None  # from `GrammarLibrary.compile`
    frequency_penalty: float = 0.0  # OpenAI's penalties: subtracted from a token's logit per use / once used
    presence_penalty: float = 0.0


@dataclass
class GenerationResult:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Vocabulary:
    """What a sequence needs to know of its model's tokens (built once per engine)."""

    tokenizer: Any  # a transformers tokenizer: decoding for the stream
    grammars: GrammarLibrary
    size: int
    stop_token_ids: tuple[int, ...]  # end-of-turn tokens, in the model's order
    forbidden: torch.Tensor  # bool over the vocabulary: padding ids and special markers other than stops

    @classmethod
    def build(cls, tokenizer: Any, *, size: int, stop_token_ids: list[int]) -> Vocabulary:
        forbidden = torch.zeros(size, dtype=torch.bool)
        forbidden[min(len(tokenizer), size) :] = True
        for token_id in tokenizer.all_special_ids:
            if token_id < size and token_id not in stop_token_ids:
                forbidden[token_id] = True
        grammars = GrammarLibrary(tokenizer, vocab_size=size, stop_token_ids=stop_token_ids)
        return cls(tokenizer=tokenizer, grammars=grammars, size=size, stop_token_ids=tuple(stop_token_ids), forbidden=forbidden)


class Sequence:
    """A request being generated: give it the logits of its last position, it answers the next token to feed.

    `on_text` receives each text delta as soon as it is safe to show (no half character, no possible start of
    a stop sequence). `cancelled` is checked by the engine between forward passes.
    """

    def __init__(
        self,
        request: GenerationRequest,
        vocabulary: Vocabulary,
        *,
        cancelled: threading.Event | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> None:
        self.request = request
        self.vocabulary = vocabulary
        self.cancelled = cancelled or threading.Event()
        self.on_text = on_text
        seed = request.seed if request.seed is not None else random.getrandbits(63)
        self.generator = torch.Generator().manual_seed(seed)
        self.constraint = JsonConstraint(request.grammar, vocabulary.grammars) if request.grammar is not None else None
        self.decoder = IncrementalDecoder(vocabulary.tokenizer)
        # Stop sequences would cut structured output into invalid JSON, so they apply to free text only.
        self.stops = StopSequences([] if self.constraint else list(request.stop))
        self.emitted: list[str] = []
        self.generated = 0
        self.finish: str | None = None
        penalised = request.frequency_penalty != 0.0 or request.presence_penalty != 0.0
        self.counts = torch.zeros(vocabulary.size) if penalised else None
        if self.constraint is not None and self.constraint.start(budget=request.max_tokens) is None:
            log_fields(logger, "no completion found for the schema; generating without the budget guarantee", level=logging.WARNING)
        if request.max_tokens <= 0:
            self.finish = FINISH_LENGTH

    @property
    def done(self) -> bool:
        return self.finish is not None

    def check_cancelled(self) -> bool:
        """Mark the sequence cancelled if its client left; True when it is (then it takes no more logits)."""
        if self.finish is None and self.cancelled.is_set():
            self.finish = FINISH_CANCELLED
        return self.finish == FINISH_CANCELLED

    def choose(self, logits: torch.Tensor) -> int | None:
        """Take the logits of the last position (1-D float32, CPU; changed in place) and return the next token
        to feed the model, or None once the sequence has finished (`finish` says why)."""
        if self.finish is not None:
            return None
        request, constraint = self.request, self.constraint
        logits[self.vocabulary.forbidden] = float("-inf")
        if self.counts is not None:
            logits -= request.frequency_penalty * self.counts + request.presence_penalty * (self.counts > 0)
        if constraint is not None:
            constraint.mask(logits)
        token = sample_token(logits, temperature=request.temperature, top_p=request.top_p, generator=self.generator)
        if token is None:
            self.finish = FINISH_LENGTH
            return None
        if token in self.vocabulary.stop_token_ids:
            self.finish = FINISH_STOP
            return None
        if constraint is not None and not constraint.advance(token, budget_after=request.max_tokens - self.generated - 1):
            closing = constraint.finish() or []
            self.generated += len(closing)
            self._emit(closing)
            self.finish = FINISH_STOP if constraint.completed else FINISH_LENGTH
            return None
        self.generated += 1
        if self.counts is not None:
            self.counts[token] += 1
        self._emit([token])
        if self.stops.stopped or (constraint is not None and constraint.only_stop_allowed()):
            self.finish = FINISH_STOP
            return None
        if self.generated >= request.max_tokens:
            self.finish = FINISH_LENGTH
            return None
        return token

    def result(self) -> GenerationResult:
        """The answer once finished: the rest of the text is released to `on_text`, and the finish reason set."""
        finish = self.finish or FINISH_LENGTH
        if self.constraint is not None and finish != FINISH_CANCELLED:
            finish = FINISH_STOP if self.constraint.completed else FINISH_LENGTH
        full_text = self.decoder.text()
        so_far = "".join(self.emitted)
        if full_text.startswith(so_far) and len(full_text) > len(so_far):
            self._send(self.stops.push(full_text[len(so_far) :]))
        self._send(self.stops.flush())
        return GenerationResult(self.stops.text, finish, len(self.request.prompt_ids), self.generated)

    def _emit(self, token_ids: list[int]) -> None:
        delta = self.decoder.push(token_ids)
        self.emitted.append(delta)
        self._send(self.stops.push(delta))

    def _send(self, text: str) -> None:
        if text and self.on_text is not None:
            self.on_text(text)
