"""Loads a chat model once and runs generations one at a time, off the event loop.

The token loop is our own (a forward pass with the KV cache, then masking and sampling) rather than
`model.generate`, because one loop then serves every need at once: streaming, stop sequences, seeded
sampling, cancellation when a client goes away, and grammar-constrained JSON that must finish within
`max_tokens` (see `constrained`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import torch

from services.llm.constrained import GrammarLibrary, JsonConstraint
from services.llm.decoding import IncrementalDecoder, StopSequences, sample_token
from services.llm.matcher import GrammarMatcher
from shared.dtypes import model_dtype
from shared.errors import InvalidRequest, ModelUnavailable
from shared.logs import log_fields
from shared.metrics import ServiceMetrics
from shared.model_holder import EngineInfo
from shared.settings import Settings

logger = logging.getLogger(__name__)

FINISH_STOP = "stop"
FINISH_LENGTH = "length"
FINISH_CANCELLED = "cancelled"
# Below this size a CPU forward pass is a few small matmuls, and waking a second thread for each costs more
# than it saves (ten times more on a busy 2-core machine), so the generation thread runs single-threaded.
SINGLE_THREAD_PARAMETERS = 50_000_000


@dataclass(frozen=True)
class GenerationRequest:
    """One generation, validated: the prompt is already tokenised (see `ChatEngine.encode_prompt`)."""

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


class ChatEngine:
    """A causal LM and its tokenizer, with one worker thread that runs generations in arrival order."""

    def __init__(self, *, model: Any, tokenizer: Any, model_id: str, device: str, metrics: ServiceMetrics | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.device = device
        self.metrics = metrics
        self.loaded_at = time.time()
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.context_length = _context_length(model, tokenizer)
        self.stop_token_ids = _stop_token_ids(model, tokenizer)
        self.grammars = GrammarLibrary(tokenizer, vocab_size=self.vocab_size, stop_token_ids=self.stop_token_ids)
        self._forbidden = self._never_sampled()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-generate")
        if device == "cpu" and sum(parameter.numel() for parameter in model.parameters()) < SINGLE_THREAD_PARAMETERS:
            self._run_worker_single_threaded()

    @classmethod
    def load(
        cls, model_path: Path, *, model_id: str, device: str, settings: Settings, metrics: ServiceMetrics | None = None
    ) -> "ChatEngine":
        """Load weights and tokenizer from a local folder, in the dtype `shared.dtypes` chooses for the device."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = model_dtype(device, settings)
        tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        if not getattr(tokenizer, "chat_template", None):
            raise ModelUnavailable(
                f"The LLM at {model_path} has no chat template; use an instruct/chat model (FABULA_LLM_MODEL).",
                param="FABULA_LLM_MODEL",
            )
        placement = {"device_map": device} if device.startswith("cuda") else {}
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, local_files_only=True, **placement).to(device).eval()
        log_fields(logger, "chat model loaded", model=model_id, device=device, dtype=str(dtype).removeprefix("torch."), max_tokens_limit=settings.max_chat_tokens)
        return cls(model=model, tokenizer=tokenizer, model_id=model_id, device=device, metrics=metrics)

    def info(self) -> EngineInfo:
        dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        return EngineInfo(
            model=self.model_id,
            device=self.device,
            dtype=dtype,
            extra={
                "context_length": self.context_length,
                "structured_output": f"llguidance {version('llguidance')}",
                "grammars_compiled": self.grammars.compilations,
                "grammars_cached": self.grammars.cached,
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

    # -- running generations ---------------------------------------------------------------------------

    async def complete(self, request: GenerationRequest) -> GenerationResult:
        cancelled = threading.Event()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._run, request, time.perf_counter(), cancelled, None)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def stream(self, request: GenerationRequest, cancelled: threading.Event) -> AsyncIterator[str | GenerationResult]:
        """Yield text deltas as they are written, then the `GenerationResult`. Setting `cancelled` stops it."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | GenerationResult | BaseException] = asyncio.Queue()

        def publish(item: str | GenerationResult | BaseException) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work(submitted: float) -> None:
            try:
                publish(self._run(request, submitted, cancelled, publish))
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting side, which re-raises
                publish(exc)

        loop.run_in_executor(self._executor, work, time.perf_counter())
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

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _run(
        self, request: GenerationRequest, submitted: float, cancelled: threading.Event, on_text: Callable[[str], None] | None
    ) -> GenerationResult:
        started = time.perf_counter()
        queue_wait = started - submitted
        if cancelled.is_set():
            result = GenerationResult("", FINISH_CANCELLED, len(request.prompt_ids), 0)
        else:
            if self.metrics:
                self.metrics.observe_batch(1, [queue_wait])
            result = self.generate(request, cancelled=cancelled, on_text=on_text)
            if self.metrics:
                self.metrics.generated_items.labels(self.metrics.service).inc()
        result.timings = {"queue_seconds": queue_wait, "inference_seconds": time.perf_counter() - started}
        log_fields(
            logger, "chat completion", prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
            finish_reason=result.finish_reason, structured=request.grammar is not None,
            queue_seconds=round(queue_wait, 3), seconds=round(result.timings["inference_seconds"], 3),
        )
        return result

    def generate(
        self, request: GenerationRequest, *, cancelled: threading.Event | None = None, on_text: Callable[[str], None] | None = None
    ) -> GenerationResult:
        """Run one generation in this thread; `on_text` receives each text delta as soon as it is safe to show."""
        prompt_ids = request.prompt_ids
        seed = request.seed if request.seed is not None else random.getrandbits(63)
        generator = torch.Generator().manual_seed(seed)
        constraint = JsonConstraint(request.grammar, self.grammars) if request.grammar is not None else None
        decoder = IncrementalDecoder(self.tokenizer)
        # Stop sequences would cut structured output into invalid JSON, so they apply to free text only.
        stops = StopSequences([] if constraint else list(request.stop))
        emitted: list[str] = []

        def emit(token_ids: list[int]) -> None:
            delta = decoder.push(token_ids)
            emitted.append(delta)
            safe = stops.push(delta)
            if safe and on_text:
                on_text(safe)

        finish = FINISH_LENGTH
        generated = 0
        if constraint is not None and constraint.start(budget=request.max_tokens) is None:
            log_fields(logger, "no completion found for the schema; generating without the budget guarantee", level=logging.WARNING)
        penalised = request.frequency_penalty != 0.0 or request.presence_penalty != 0.0
        counts = torch.zeros(self.vocab_size) if penalised else None
        with torch.inference_mode():
            input_ids = torch.tensor([prompt_ids], device=self.device)
            cache = None
            while generated < request.max_tokens:
                if cancelled is not None and cancelled.is_set():
                    finish = FINISH_CANCELLED
                    break
                outputs = self.model(input_ids=input_ids, cache=cache, use_cache=True)
                cache = outputs.cache
                logits = outputs.logits[0, -1].float().cpu()
                logits[self._forbidden] = float("-inf")
                if counts is not None:
                    logits -= request.frequency_penalty * counts + request.presence_penalty * (counts > 0)
                if constraint is not None:
                    constraint.mask(logits)
                token = sample_token(logits, temperature=request.temperature, top_p=request.top_p, generator=generator)
                if token is None:
                    break
                if token in self.stop_token_ids:
                    finish = FINISH_STOP
                    break
                if constraint is not None and not constraint.advance(token, budget_after=request.max_tokens - generated - 1):
                    closing = constraint.finish() or []
                    generated += len(closing)
                    emit(closing)
                    finish = FINISH_STOP if constraint.completed else FINISH_LENGTH
                    break
                generated += 1
                if counts is not None:
                    counts[token] += 1
                emit([token])
                if stops.stopped or (constraint is not None and constraint.only_stop_allowed()):
                    finish = FINISH_STOP
                    break
                input_ids = torch.tensor([[token]], device=self.device)
        if constraint is not None and finish != FINISH_CANCELLED:
            finish = FINISH_STOP if constraint.completed else FINISH_LENGTH
        full_text = decoder.text()
        so_far = "".join(emitted)
        if full_text.startswith(so_far) and len(full_text) > len(so_far):
            rest = stops.push(full_text[len(so_far) :])
            if rest and on_text:
                on_text(rest)
        tail = stops.flush()
        if tail and on_text:
            on_text(tail)
        return GenerationResult(stops.text, finish, len(prompt_ids), generated)

    def _run_worker_single_threaded(self) -> None:
        """`torch.set_num_threads` also changes the default that other threads compute with, so put it back.

        The worker first runs one op large enough for a parallel region: only then does an OpenMP thread keep
        its own thread count (libgomp), instead of reading the shared default that is restored below.
        """

        def single_threaded() -> int:
            torch.set_num_threads(1)
            torch.ones(1 << 18).add_(1)
            return torch.get_num_threads()

        previous = torch.get_num_threads()
        self._executor.submit(single_threaded).result()
        torch.set_num_threads(previous)
        worker_threads = self._executor.submit(torch.get_num_threads).result()
        log_fields(logger, "generation thread", torch_threads=worker_threads, level=logging.DEBUG)

    def _never_sampled(self) -> torch.Tensor:
        """Token ids that belong to no token (vocabulary padding) or are special markers other than stops."""
        forbidden = torch.zeros(self.vocab_size, dtype=torch.bool)
        forbidden[min(len(self.tokenizer), self.vocab_size) :] = True
        for token_id in self.tokenizer.all_special_ids:
            if token_id < self.vocab_size and token_id not in self.stop_token_ids:
                forbidden[token_id] = True
        return forbidden


def _context_length(model: Any, tokenizer: Any) -> int | None:
    """The model's context: its position embeddings, else the tokenizer's limit (which many tokenizers leave at a
    huge placeholder value; that counts as unknown)."""
    configured = int(getattr(model.config, "max_position_embeddings", 0) or 0)
    if configured > 0:
        return configured
    limit = int(getattr(tokenizer, "model_max_length", 0) or 0)
    return limit if 0 < limit < 10_000_000 else None


def _stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The end-of-turn tokens: the generation config's `eos_token_id` (one or a list), else the tokenizer's."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    if configured is None:
        configured = tokenizer.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    return [int(token_id) for token_id in ids if token_id is not None]
