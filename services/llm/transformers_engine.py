"""The transformers engine: a causal LM from a safetensors folder, for GPUs and models llama.cpp cannot read.

The token loop is our own (a forward pass with the KV cache, then `Sequence.choose`) rather than
`model.generate`, because one loop then serves every need at once: streaming, stop sequences, seeded sampling,
cancellation when a client goes away, and grammar-constrained JSON that must finish within `max_tokens`.
Concurrent requests are decoded together in cohorts: the scheduler thread takes the requests that arrive within a
short window (up to `parallel`), left-pads their prompts into one batch, and advances every one of them with each
forward pass until the last has finished; requests that arrive meanwhile form the next cohort. On a GPU a pass over
eight sequences costs little more than over one. (The llama.cpp engine admits newcomers into a running batch; with
padded caches that is not worth its complexity here.)
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import torch

from services.llm.engine import ChatEngine, Submission, stop_token_ids
from services.llm.sequence import Sequence, Vocabulary
from shared.dtypes import model_dtype
from shared.errors import ModelUnavailable, ModelNotReady
from shared.logs import log_fields
from shared.metrics import ServiceMetrics
from shared.settings import Settings

logger = logging.getLogger(__name__)

# Below this size a CPU forward pass is a few small matmuls, and waking a second thread for each costs more
# than it saves (ten times more on a busy 2-core machine), so the generation thread runs single-threaded.
SINGLE_THREAD_PARAMETERS = 50_000_000


class TransformersEngine(ChatEngine):
    engine_name = "transformers"

    def __init__(
        self, *, model: Any, tokenizer: Any, model_id: str, device: str, metrics: ServiceMetrics | None = None,
        parallel: int = 8, window_s: float = 0.025,
    ) -> None:
        vocab_size = int(model.get_output_embeddings().weight.shape[0])
        configured_stops = getattr(model.generation_config, "eos_token_id", None)
        vocabulary = Vocabulary.build(tokenizer, size=vocab_size, stop_token_ids=stop_token_ids(configured_stops, tokenizer.eos_token_id))
        super().__init__(
            tokenizer=tokenizer, vocabulary=vocabulary, model_id=model_id, device=device,
            context_length=_context_length(model, tokenizer), metrics=metrics,
        )
        self.model = model
        self.vocab_size = vocab_size
        self.parallel = max(1, parallel)
        self.window_s = max(0.0, window_s)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (vocabulary.stop_token_ids or (0,))[0]
        self._queue: queue.SimpleQueue[Submission | None] = queue.SimpleQueue()
        self._closed = False
        self._single_threaded = device == "cpu" and sum(parameter.numel() for parameter in model.parameters()) < SINGLE_THREAD_PARAMETERS
        self._thread: threading.Thread | None = None

    @classmethod
    def load(
        cls, model_path: Path, *, model_id: str, device: str, settings: Settings, metrics: ServiceMetrics | None = None
    ) -> TransformersEngine:
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
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, local_files_only=True, **placement)
        # transformers 5 wraps `PreTrainedModel.to` in `functools.wraps`, whose typeshed type does not bind `self`.
        model = model.to(device).eval()  # type: ignore[arg-type]
        log_fields(logger, "chat model loaded", model=model_id, device=device, dtype=str(dtype).removeprefix("torch."), engine=cls.engine_name)
        return cls(
            model=model, tokenizer=tokenizer, model_id=model_id, device=device, metrics=metrics,
            parallel=settings.llm_parallel, window_s=settings.batch_window_ms / 1000,
        )

    def _dtype(self) -> str:
        return str(next(self.model.parameters()).dtype).removeprefix("torch.")

    def _info_extra(self) -> dict[str, Any]:
        return {"parallel_sequences": self.parallel}

    def _submit(self, submission: Submission) -> None:
        if self._closed:
            submission.answer(ModelNotReady("The llm service is shutting down; try again shortly."))
            return
        self._queue.put(submission)

    def start(self) -> None:
        if self._thread is not None:
            return
        previous = torch.get_num_threads()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(self._single_threaded, ready), name="llm-generate", daemon=True)
        self._thread.start()
        ready.wait()
        torch.set_num_threads(previous)  # the process default, which the worker changed for itself

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)

    def _serve(self, single_threaded: bool, ready: threading.Event) -> None:
        if single_threaded:
            # `torch.set_num_threads` also changes the default other threads compute with (the constructor puts
            # it back); once this thread has run one op large enough for a parallel region, OpenMP (libgomp)
            # keeps this thread's own count.
            torch.set_num_threads(1)
            torch.ones(1 << 18).add_(1)
        ready.set()
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            cohort, stopping = self._gather(first)
            cohort = [submission for submission in cohort if not self._drop_if_unwanted(submission)]
            if not cohort:
                continue
            try:
                self._generate(cohort)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting side, which re-raises
                logger.exception("generation failed")
                for submission in cohort:
                    submission.answer(exc)

    def _gather(self, first: Submission) -> tuple[list[Submission], bool]:
        """`first` and what else arrives within the window, up to `parallel`; and whether the engine is closing."""
        cohort = [first]
        deadline = time.monotonic() + self.window_s
        while len(cohort) < self.parallel:
            try:
                submission = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if submission is None:
                return cohort, True
            cohort.append(submission)
        return cohort, False

    def _generate(self, cohort: list[Submission]) -> None:
        """Decode the cohort together: left-padded prompts, one forward pass per token for all of them; each request
        is answered the moment its own sequence ends."""
        started = self._begin_each(cohort)
        if not started:
            return
        sequences = [submission.sequence for submission in started]
        prompts = [submission.request.prompt_ids for submission in started]
        width = max(len(prompt) for prompt in prompts)
        pad = self.pad_token_id
        with torch.inference_mode():
            input_ids = torch.tensor([[pad] * (width - len(prompt)) + prompt for prompt in prompts], device=self.device)
            mask = torch.tensor([[0] * (width - len(prompt)) + [1] * len(prompt) for prompt in prompts], device=self.device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            cache = None
            while True:
                for submission, sequence in zip(started, sequences, strict=True):
                    if sequence is not None and (sequence.done or sequence.check_cancelled()):
                        self._finish(submission)
                live = [row for row, sequence in enumerate(sequences) if sequence is not None and not sequence.done]
                if not live:
                    break
                outputs = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
                self._observe_step(len(live))
                cache = outputs.cache
                next_tokens = _choose_next_tokens(sequences, live, outputs.logits, pad=pad)
                input_ids = torch.tensor([[token] for token in next_tokens], device=self.device)
                mask = torch.cat([mask, torch.ones((len(sequences), 1), dtype=mask.dtype, device=self.device)], dim=1)
                positions = positions[:, -1:] + 1
        for submission in started:
            self._finish(submission)  # answered once: a request that already had its answer is skipped

    def _begin_each(self, cohort: list[Submission]) -> list[Submission]:
        """Start every request's sequence; one that cannot start is answered with its error and left out."""
        started: list[Submission] = []
        for submission in cohort:
            try:
                self._begin(submission)
            except Exception as exc:  # noqa: BLE001 - this request fails alone
                logger.exception("could not start a generation")
                submission.answer(exc)
                continue
            started.append(submission)
        return started


def _choose_next_tokens(sequences: list[Sequence | None], live: list[int], logits: torch.Tensor, *, pad: int) -> list[int]:
    """Each live row's next token from its last position's logits; rows that ended (or chose none) get `pad`."""
    next_tokens = [pad] * len(sequences)
    for row in live:
        sequence = sequences[row]
        assert sequence is not None
        token = sequence.choose(logits[row, -1].float().cpu())
        if token is not None:
            next_tokens[row] = token
    return next_tokens


def _context_length(model: Any, tokenizer: Any) -> int | None:
    """The model's context: its position embeddings, else the tokenizer's limit (which many tokenizers leave at a
    huge placeholder value; that counts as unknown)."""
    configured = int(getattr(model.config, "max_position_embeddings", 0) or 0)
    if configured > 0:
        return configured
    limit = int(getattr(tokenizer, "model_max_length", 0) or 0)
    return limit if 0 < limit < 10_000_000 else None
