"""The llama.cpp engine: GGUF chat models on the CPU, concurrent requests decoded together.

One scheduler thread owns a llama.cpp context with `parallel` sequence slots sharing one KV pool
(`context_tokens` cells). Every step it builds one batch: the next token of every sequence that is writing, then
as much of the waiting prompts as the batch has room for (a long prompt is read in chunks between the other
sequences' tokens, so it never stalls them), and runs one forward pass. So the eight page calls of a book share
each pass instead of queuing one by one; on a CPU a pass over four sequences costs little more than over one.

What the logits of each sequence mean (grammar, penalties, seeded sampling, stops, streaming) is decided by
`sequence.Sequence`, exactly as in the transformers engine. The tokenizer (and chat template) is the GGUF
file's own, read once through transformers into a small folder beside the models (`gguf.tokenizer_folder`);
llguidance needs it for the grammar, and its ids are the GGUF vocabulary's.

A sequence is admitted only when its prompt and `max_tokens` fit in the free KV cells, so a running
generation never runs out of room; requests that do not fit yet wait their turn in arrival order.

Threads: llama.cpp's compute threads spin while they wait for each other, so on a machine whose cores are also
busy with the other services, more threads can be much slower than fewer. `FABULA_LLM_THREADS` fixes the count;
by default `threads.ThreadTuner` keeps whichever count between one and all usable cores is fastest right now.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from services.llm.engine import ChatEngine, Submission
from services.llm.sequence import Sequence, Vocabulary
from services.llm.threads import ThreadTuner
from shared.errors import ModelNotReady, ModelUnavailable
from shared.logs import log_fields
from shared.metrics import ServiceMetrics
from shared.settings import Settings

logger = logging.getLogger(__name__)

BATCH_TOKENS = 512  # tokens one forward pass takes at most (decoding tokens first, then prompt chunks)
IDLE_WAIT_S = 0.25


MAX_THREADS = 8  # past this, a CPU forward pass of these model sizes gains little from another thread


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at most `MAX_THREADS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cores))


GGML_LOG_ERROR = 4  # ggml's levels: 1 debug, 2 info, 3 warn, 4 error, 5 continued
_llama_logger = logging.getLogger("llama.cpp")
_log_callback: Any = None


def _route_llama_logs(llama_cpp: Any) -> None:
    """llama.cpp writes its own lines to stderr; send them to our log instead, errors as errors and the rest at
    debug level (its load report is dozens of lines per start)."""
    global _log_callback
    if _log_callback is not None:
        return

    @llama_cpp.llama_log_callback
    def forward(level: int, text: bytes, _: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", "replace").rstrip()
        if line:
            _llama_logger.log(logging.ERROR if level == GGML_LOG_ERROR else logging.DEBUG, line)

    _log_callback = forward  # ctypes calls it for the life of the process: keep it referenced
    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))


class _Slot:
    """A sequence in one of the context's slots: its prompt is read, then it writes one token per step."""

    def __init__(self, submission: Submission, sequence: Sequence, seq_id: int, reserved: int) -> None:
        self.submission = submission
        self.sequence = sequence
        self.seq_id = seq_id
        self.reserved = reserved
        self.prompt = submission.request.prompt_ids
        self.read = 0  # prompt tokens already in the KV cache
        self.position = 0  # the next token's position
        self.next_token: int | None = None  # the token to feed once the prompt is read
        self.logits_row: int | None = None  # this step's row in the batch's outputs


class LlamaCppEngine(ChatEngine):
    engine_name = "llama.cpp"

    def __init__(
        self,
        *,
        gguf_file: Path,
        tokenizer: Any,
        model_id: str,
        tuner: ThreadTuner,
        parallel: int,
        context_tokens: int,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        import llama_cpp
        from llama_cpp import _internals

        _route_llama_logs(llama_cpp)
        llama_cpp.llama_backend_init()
        self._llama = llama_cpp
        model_params = llama_cpp.llama_model_default_params()
        try:
            self._model = _internals.LlamaModel(path_model=str(gguf_file), params=model_params, verbose=False)
        except ValueError as exc:
            raise ModelUnavailable(f"llama.cpp could not load {gguf_file}: {exc}", param="FABULA_LLM_MODEL") from None
        trained = int(self._model.n_ctx_train()) or context_tokens
        self.parallel = max(1, parallel)
        self.pool = max(256, context_tokens)
        context_params = llama_cpp.llama_context_default_params()
        context_params.n_ctx = self.pool
        context_params.n_batch = BATCH_TOKENS
        context_params.n_ubatch = BATCH_TOKENS
        context_params.n_seq_max = self.parallel
        context_params.n_threads = tuner.current
        context_params.n_threads_batch = tuner.current
        context_params.kv_unified = True  # one pool of cells: a long request may use what short ones leave
        try:
            self._context = _internals.LlamaContext(model=self._model, params=context_params, verbose=False)
        except ValueError as exc:
            raise ModelUnavailable(f"llama.cpp could not make a context for {gguf_file}: {exc}", param="FABULA_LLM_MODEL") from None
        self._memory = llama_cpp.llama_get_memory(self._context.ctx)
        self._batch = _internals.LlamaBatch(n_tokens=BATCH_TOKENS, embd=0, n_seq_max=1, verbose=False)
        vocab = self._model.vocab
        size = int(llama_cpp.llama_vocab_n_tokens(vocab))
        stops = sorted({
            token_id for token_id in [*tokenizer.all_special_ids, tokenizer.eos_token_id, self._model.token_eos(), self._model.token_eot()]
            if token_id is not None and 0 <= token_id < size and llama_cpp.llama_vocab_is_eog(vocab, token_id)
        })
        vocabulary = Vocabulary.build(tokenizer, size=size, stop_token_ids=stops)
        super().__init__(
            tokenizer=tokenizer, vocabulary=vocabulary, model_id=model_id, device="cpu",
            context_length=min(trained, self.pool), metrics=metrics,
        )
        self.tuner = tuner
        self._threads_now = tuner.current
        self.gguf_file = gguf_file
        self._waiting: deque[Submission] = deque()
        self._slots: list[_Slot] = []
        self._free_ids = list(range(self.parallel))
        self._reserved = 0
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="llm-llama", daemon=True)

    @classmethod
    def load(
        cls, gguf_file: Path, tokenizer_path: Path, *, model_id: str, settings: Settings, metrics: ServiceMetrics | None = None
    ) -> LlamaCppEngine:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path, local_files_only=True)
        if not getattr(tokenizer, "chat_template", None):
            raise ModelUnavailable(
                f"The GGUF file {gguf_file} has no chat template; use an instruct/chat model (FABULA_LLM_MODEL).",
                param="FABULA_LLM_MODEL",
            )
        tuner = ThreadTuner.fixed(settings.llm_threads) if settings.llm_threads else ThreadTuner.up_to(usable_cores())
        engine = cls(
            gguf_file=gguf_file, tokenizer=tokenizer, model_id=model_id, tuner=tuner,
            parallel=settings.llm_parallel, context_tokens=settings.llm_context_tokens, metrics=metrics,
        )
        log_fields(
            logger, "chat model loaded", model=model_id, engine=cls.engine_name, file=gguf_file.name, threads=list(tuner.candidates),
            parallel=engine.parallel, kv_cells=engine.pool, context_length=engine.context_length,
        )
        return engine

    def _dtype(self) -> str:
        description = self._model.desc()  # "llama 135M Q4_1"
        return description.split()[-1] if description else "gguf"

    def _info_extra(self) -> dict[str, Any]:
        return {
            "threads": self.tuner.current, "threads_tried": ",".join(map(str, self.tuner.candidates)),
            "parallel_sequences": self.parallel, "kv_cells": self.pool, "file": self.gguf_file.name,
        }

    # -- the queue ------------------------------------------------------------------------------------------
    def _submit(self, submission: Submission) -> None:
        with self._wake:
            if self._closed:
                submission.answer(ModelNotReady("The llm service is shutting down; try again shortly."))
                return
            self._waiting.append(submission)
            self._wake.notify()

    def start(self) -> None:
        if self._thread.ident is None:
            self._thread.start()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread.ident is not None:
            self._thread.join(timeout=10)

    # -- the scheduler thread -------------------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            while True:
                with self._wake:
                    while not self._closed and not self._waiting and not self._slots:
                        self._wake.wait(IDLE_WAIT_S)
                    if self._closed:
                        break
                    waiting = list(self._waiting)
                try:
                    self._admit(waiting)
                    if self._slots:
                        self._step()
                except Exception as exc:  # noqa: BLE001 - the running requests fail; the engine goes on serving
                    logger.exception("llama.cpp scheduler step failed")
                    self._fail_all(exc)
        finally:
            with self._wake:
                self._closed = True  # from now on a submission is answered at once, never left waiting
            self._shut_down()

    def _admit(self, waiting: list[Submission]) -> None:
        """Drop queued requests nobody waits for any more; start those that fit, in arrival order."""
        for submission in waiting:
            if self._drop_if_unwanted(submission):
                self._forget(submission)
        with self._wake:
            candidates = list(self._waiting)
        for submission in candidates:
            request = submission.request
            needed = len(request.prompt_ids) + request.max_tokens
            if not self._free_ids or self._reserved + needed > self.pool:
                break  # the oldest waits for room; no younger request overtakes it
            self._forget(submission)
            try:
                sequence = self._begin(submission)
            except BaseException as exc:  # noqa: BLE001 - the request fails alone
                logger.exception("could not start a generation")
                submission.answer(exc)
                continue
            if sequence.done:
                self._finish(submission)
                continue
            self._slots.append(_Slot(submission, sequence, self._free_ids.pop(0), needed))
            self._reserved += needed

    def _forget(self, submission: Submission) -> None:
        with self._wake, contextlib.suppress(ValueError):
            self._waiting.remove(submission)

    def _step(self) -> None:
        """One forward pass over every slot: writers feed their last token, readers a chunk of their prompt."""
        for slot in [slot for slot in self._slots if slot.sequence.check_cancelled()]:
            self._release(slot)
        if not self._slots:
            return
        writers, readers, rows = self._fill_batch()
        threads = self.tuner.threads_for_step()
        if threads != self._threads_now:
            self._llama.llama_set_n_threads(self._context.ctx, threads, threads)
            self._threads_now = threads
        started = time.perf_counter()
        status = self._llama.llama_decode(self._context.ctx, self._batch.batch)
        if status != 0:
            self._fail_all(RuntimeError(f"llama.cpp could not run the batch (llama_decode returned {status})"))
            return
        if not readers:  # prompt chunks cost far less per token than decoding: only decoding passes are compared
            self.tuner.record(threads, time.perf_counter() - started, rows)
        self._observe_step(len(writers) + len(readers))
        for slot in [*writers, *readers]:
            if slot.logits_row is not None:
                self._choose(slot)

    def _fill_batch(self) -> tuple[list[_Slot], list[_Slot], int]:
        """Fill the batch: first the next token of every writing slot, then as much of the waiting prompts as fits.
        Returns the writers, the readers and the number of tokens."""
        batch = self._batch.batch
        rows = 0
        writers = [slot for slot in self._slots if slot.next_token is not None]
        for slot in writers:
            assert slot.next_token is not None
            rows = self._put(batch, rows, slot.next_token, slot.position, slot.seq_id, wants_logits=True)
            slot.logits_row = rows - 1
            slot.position += 1
        readers: list[_Slot] = []
        for slot in self._slots:
            room = BATCH_TOKENS - rows
            if slot.next_token is not None or room <= 0:
                continue
            chunk = slot.prompt[slot.read : slot.read + room]
            for offset, prompt_token in enumerate(chunk):
                last = slot.read + offset == len(slot.prompt) - 1
                rows = self._put(batch, rows, prompt_token, slot.read + offset, slot.seq_id, wants_logits=last)
            slot.read += len(chunk)
            slot.position = slot.read
            slot.logits_row = rows - 1 if slot.read == len(slot.prompt) else None
            readers.append(slot)
        batch.n_tokens = rows
        return writers, readers, rows

    def _choose(self, slot: _Slot) -> None:
        """Hand the slot's logits to its sequence; the token it chooses is fed next pass, or the slot is done."""
        assert slot.logits_row is not None
        pointer = self._llama.llama_get_logits_ith(self._context.ctx, slot.logits_row)
        row = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(self.vocabulary.size,))
        try:
            token = slot.sequence.choose(torch.from_numpy(row.copy()))
        except BaseException as exc:  # noqa: BLE001 - the request fails alone
            logger.exception("generation failed")
            self._release(slot, outcome=exc)
            return
        if token is None:
            self._release(slot)
        else:
            slot.next_token = token

    @staticmethod
    def _put(batch: Any, row: int, token: int, position: int, seq_id: int, *, wants_logits: bool) -> int:
        batch.token[row] = token
        batch.pos[row] = position
        batch.n_seq_id[row] = 1
        batch.seq_id[row][0] = seq_id
        batch.logits[row] = wants_logits
        return row + 1

    def _release(self, slot: _Slot, *, outcome: BaseException | None = None) -> None:
        """Free the slot and its KV cells, and answer its request."""
        self._llama.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
        self._slots.remove(slot)
        self._free_ids.append(slot.seq_id)
        self._reserved -= slot.reserved
        if outcome is not None:
            slot.submission.answer(outcome)
        else:
            self._finish(slot.submission)

    def _fail_all(self, error: BaseException) -> None:
        logger.error("llama.cpp step failed", extra={"fields": {"error": str(error)}})
        for slot in list(self._slots):
            self._release(slot, outcome=error)

    def _shut_down(self) -> None:
        stopping = ModelNotReady("The llm service is shutting down; try again shortly.")
        for slot in list(self._slots):
            slot.sequence.cancelled.set()
            self._release(slot, outcome=stopping)
        with self._wake:
            waiting, self._waiting = list(self._waiting), deque()
        for submission in waiting:
            submission.answer(stopping)
        started = time.perf_counter()
        self._batch.close()
        self._context.close()
        self._model.close()
        log_fields(logger, "llama.cpp engine closed", seconds=round(time.perf_counter() - started, 3), level=logging.DEBUG)
