"""What every chat engine offers the service: prompts in, generations out, off the event loop.

Two engines run behind the one OpenAI contract (`engines` picks one for a model):
- `LlamaCppEngine` (`llama_engine`): GGUF files through llama.cpp, every concurrent request decoded in one
  batched forward pass per token; the fast path on CPUs.
- `TransformersEngine` (`transformers_engine`): safetensors folders through transformers, for GPUs and any
  model llama.cpp cannot read.

The engine owns the model and a scheduler thread, and is the service's batcher (`shared.batching.Batcher`): the
service frame calls `start` once the engine is loaded and `stop` at shutdown. What a set of logits means for a
request (grammar, penalties, sampling, stops, streaming) is decided by `sequence.Sequence`, the same for both. A request still queued at its
deadline is answered with a 504 and never run, and one whose client left is dropped before it runs; both are
counted in `fabula_requests_dropped_total`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from services.llm.sequence import (
    FINISH_CANCELLED,
    FINISH_LENGTH,
    FINISH_STOP,
    GenerationRequest,
    GenerationResult,
    Sequence,
    Vocabulary,
)
from shared.batching import DROPPED_DEADLINE, DROPPED_DISCONNECTED
from shared.errors import DeadlineExceeded, InvalidRequest
from shared.logs import log_fields
from shared.metrics import ServiceMetrics
from shared.model_holder import EngineInfo

logger = logging.getLogger(__name__)

__all__ = [
    "FINISH_CANCELLED", "FINISH_LENGTH", "FINISH_STOP", "ChatEngine", "GenerationRequest", "GenerationResult", "Submission",
]

Outcome = GenerationResult | BaseException


@dataclass(eq=False)
class Submission:
    """A request handed to an engine's scheduler thread: it builds the `Sequence` there and reports once."""

    request: GenerationRequest
    cancelled: threading.Event
    on_text: Callable[[str], None] | None
    on_done: Callable[[Outcome], None]
    deadline: float | None = None
    submitted: float = field(default_factory=time.perf_counter)
    submitted_monotonic: float = field(default_factory=time.monotonic)
    started: float | None = None
    sequence: Sequence | None = None
    answered: bool = False

    def answer(self, outcome: Outcome) -> None:
        """Report the outcome, once; a waiting side that is gone (its event loop closed) never breaks the scheduler."""
        if self.answered:
            return
        self.answered = True
        try:
            self.on_done(outcome)
        except Exception:  # noqa: BLE001 - nothing is left to tell
            logger.debug("a finished generation had nobody waiting for it", exc_info=True)

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


class ChatEngine(ABC):
    """A chat model and its scheduler. Subclasses load the model and run `Submission`s on their own thread."""

    engine_name = "engine"

    def __init__(
        self, *, tokenizer: Any, vocabulary: Vocabulary, model_id: str, device: str, context_length: int | None, metrics: ServiceMetrics | None
    ) -> None:
        self.tokenizer = tokenizer
        self.vocabulary = vocabulary
        self.grammars = vocabulary.grammars
        self.model_id = model_id
        self.device = device
        self.context_length = context_length
        self.metrics = metrics
        self.loaded_at = time.time()

    # -- what subclasses provide ----------------------------------------------------------------------------
    @abstractmethod
    def _submit(self, submission: Submission) -> None:
        """Queue `submission` for the scheduler thread (thread-safe, returns at once)."""

    @abstractmethod
    def start(self) -> None:
        """Start the scheduler thread; submissions made before wait for it."""

    @abstractmethod
    def close(self) -> None:
        """Stop the scheduler; queued and running generations end as cancelled."""

    async def stop(self) -> None:
        """`close`, off the event loop (it waits for the scheduler thread to finish its pass)."""
        await asyncio.to_thread(self.close)

    @abstractmethod
    def _info_extra(self) -> dict[str, Any]:
        """Engine facts for `/readyz` (threads, parallel sequences, dtype...)."""

    def _dtype(self) -> str:
        return "unknown"

    # -- shared ---------------------------------------------------------------------------------------------
    @property
    def stop_token_ids(self) -> list[int]:
        return list(self.vocabulary.stop_token_ids)

    def info(self) -> EngineInfo:
        from importlib.metadata import version

        return EngineInfo(
            model=self.model_id,
            device=self.device,
            dtype=self._dtype(),
            extra={
                "engine": self.engine_name,
                "context_length": self.context_length,
                "structured_output": f"llguidance {version('llguidance')}",
                "grammars_compiled": self.grammars.compilations,
                "grammars_cached": self.grammars.cached,
                **self._info_extra(),
            },
        )

    def encode_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(encoded["input_ids"])

    def check_context(self, prompt_tokens: int, max_tokens: int, *, max_tokens_param: str) -> None:
        if self.context_length is None:
            return
        if prompt_tokens >= self.context_length:
            raise InvalidRequest(
                f"`messages` take {prompt_tokens} tokens; the model's context holds {self.context_length}.", param="messages"
            )
        if prompt_tokens + max_tokens > self.context_length:
            raise InvalidRequest(
                f"`{max_tokens_param}` is {max_tokens}, but with {prompt_tokens} prompt tokens at most "
                f"{self.context_length - prompt_tokens} fit in the model's context of {self.context_length}.",
                param=max_tokens_param,
            )

    async def complete(self, request: GenerationRequest, *, deadline: float | None = None) -> GenerationResult:
        """The whole answer; cancelling the awaiting task (the client left) stops the generation."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[GenerationResult] = loop.create_future()
        cancelled = threading.Event()

        def on_done(outcome: Outcome) -> None:
            loop.call_soon_threadsafe(_settle, future, outcome)

        self._submit(Submission(request, cancelled, None, on_done, deadline))
        try:
            return await future
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def stream(
        self, request: GenerationRequest, cancelled: threading.Event, *, deadline: float | None = None
    ) -> AsyncIterator[str | GenerationResult]:
        """Yield text deltas as they are written, then the `GenerationResult`. Setting `cancelled` stops it."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | Outcome] = asyncio.Queue()

        def publish(item: str | Outcome) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the stream's event loop is closed: nobody reads any more
                cancelled.set()

        self._submit(Submission(request, cancelled, publish, publish, deadline))
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, GenerationResult):
                    break
        finally:
            cancelled.set()

    # -- helpers for the scheduler threads ------------------------------------------------------------------
    def _drop_if_unwanted(self, submission: Submission) -> bool:
        """Before a queued submission starts: answer it now if its client left (cancelled) or its deadline
        passed (504). True when it was answered and must not run."""
        if submission.cancelled.is_set():
            if self.metrics:
                self.metrics.observe_dropped(DROPPED_DISCONNECTED)
            submission.answer(GenerationResult("", FINISH_CANCELLED, len(submission.request.prompt_ids), 0))
            return True
        if submission.expired():
            if self.metrics:
                self.metrics.observe_dropped(DROPPED_DEADLINE)
            waited = time.monotonic() - submission.submitted_monotonic
            submission.answer(DeadlineExceeded(
                f"The request waited {waited:.1f} s for the model and passed its deadline before it could start; "
                "try again, or allow more time (X-Request-Timeout, FABULA_SERVICE_TIMEOUT_S)."
            ))
            return True
        return False

    def _begin(self, submission: Submission) -> Sequence:
        """Build the submission's sequence on the scheduler thread (the grammar's first search runs here)."""
        submission.started = time.perf_counter()
        submission.sequence = Sequence(submission.request, self.vocabulary, cancelled=submission.cancelled, on_text=submission.on_text)
        if self.metrics:
            self.metrics.queue_wait_seconds.labels(self.metrics.service).observe(submission.started - submission.submitted)
        return submission.sequence

    def _finish(self, submission: Submission) -> None:
        """Report a finished sequence: its result with timings, logged and counted (once)."""
        if submission.answered:
            return
        sequence = submission.sequence
        assert sequence is not None and submission.started is not None
        try:
            result = sequence.result()
        except Exception as exc:  # noqa: BLE001 - this request fails alone
            logger.exception("could not finish a generation")
            submission.answer(exc)
            return
        now = time.perf_counter()
        result.timings = {"queue_seconds": submission.started - submission.submitted, "inference_seconds": now - submission.started}
        if self.metrics and result.finish_reason != FINISH_CANCELLED:
            self.metrics.generated_items.labels(self.metrics.service).inc()
        log_fields(
            logger, "chat completion", prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
            finish_reason=result.finish_reason, structured=submission.request.grammar is not None,
            queue_seconds=round(result.timings["queue_seconds"], 3), seconds=round(result.timings["inference_seconds"], 3), level=logging.DEBUG,
        )
        submission.answer(result)

    def _observe_step(self, sequences: int) -> None:
        """One forward pass that advanced `sequences` requests together (the real batch size)."""
        if self.metrics:
            self.metrics.pipeline_calls.labels(self.metrics.service).inc()
            self.metrics.batch_size.labels(self.metrics.service).observe(sequences)


def _settle(future: asyncio.Future[GenerationResult], outcome: Outcome) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def stop_token_ids(configured: Any, fallback: int | None) -> list[int]:
    """The end-of-turn tokens: a configured `eos_token_id` (one or a list), else the tokenizer's."""
    if configured is None:
        configured = fallback
    ids = configured if isinstance(configured, list) else [configured]
    return [int(token_id) for token_id in ids if token_id is not None]
