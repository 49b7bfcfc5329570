"""BENCHMARK ONLY: latency-injected stand-ins for the caption, illustrate and LLM services.

They are not part of the product and never run a model. They speak exactly the services' wire
(`POST /v1/caption` → `CaptionResponse`; `POST /v1/images/generations` → `ImageGenerationResponse` with real PNGs;
`POST /v1/chat/completions` in the OpenAI shape, whole or streamed) inside the same service frame (`/healthz`,
`/readyz`, `/metrics`, auth, JSON errors), and they sleep instead of computing, so the web app's orchestration can
be timed against known service times:

- caption: `caption_seconds` per model call, concurrent requests micro-batched up to `caption_batch_size`;
- LLM: `llm_prefill_seconds` plus `llm_seconds_per_token` for every generated token (≈ characters / 4 of the
  reply); concurrent requests decode side by side (a continuous-batching server) unless `llm_max_concurrent`.
  A `response_format` json_schema request gets a valid instance built from the schema (the sequential baseline
  asks for JSON); a plain-text request gets what an instruct model following the prompt would write
  (bench/stand_in_text.py: a numbered plan, a page of prose, a translation, a title, a beat), so the writer's rules
  accept it. `stream: true` answers with server-sent events that release the tokens at the same pace;
- illustrate: one simulated GPU that runs one call at a time; requests arriving within `batch_window_ms` share a
  call of up to `image_batch_size` images that takes `image_seconds_per_call` (+ `image_seconds_per_extra_image`
  for every image past the first), like the real service's micro-batcher.

Every answered request is logged (`CallLog`) with its name, what it was about and when its simulated work ran, so
a benchmark can draw the timeline of a book.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import threading
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import StreamingResponse
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from bench.schema_instance import UnsupportedSchema, schema_instance
from bench.stand_in_text import TextReply, reply_to
from shared.batching import BatchSpec, MicroBatcher
from shared.errors import InvalidRequest
from shared.images import load_image, to_b64_png
from shared.metrics import ServiceMetrics
from shared.model_holder import EngineInfo
from shared.schemas import CaptionResponse, ImageData, ImageGenerationRequest, ImageGenerationResponse, Timings, parse_size
from shared.server_thread import ServerThread
from shared.service_app import ServiceSpec
from shared.settings import Settings

STAND_IN_MODEL = "latency-stand-in"


class LatencyProfile(BaseModel):
    """The injected latencies. Defaults: a GPU deployment where one image call serves a batch of 8 in 2 s."""

    model_config = ConfigDict(frozen=True)

    caption_seconds: float = Field(default=1.0, ge=0)
    caption_batch_size: int = Field(default=8, ge=1)
    llm_seconds_per_token: float = Field(default=0.02, ge=0)
    llm_prefill_seconds: float = Field(default=0.0, ge=0)
    llm_max_concurrent: int | None = Field(default=None, ge=1, description="None: concurrent requests decode side by side.")
    string_chars: int = Field(default=240, ge=1, description="Length of each generated string, clipped to the schema's bounds; "
                              "of each plain-text page and translation source.")
    beat_chars: int = Field(default=120, ge=24, description="Length of each one-sentence beat of a plain-text plan, and of a beat asked alone.")
    image_seconds_per_call: float = Field(default=2.0, ge=0)
    image_batch_size: int = Field(default=8, ge=1)
    image_seconds_per_extra_image: float = Field(default=0.0, ge=0)
    batch_window_ms: float = Field(default=25.0, ge=0)
    image_pixels: int = Field(default=256, ge=8, description="Largest side of the PNGs returned (the requested size is not painted).")
    caption_text: str = "A girl in a yellow raincoat and her small brown dog splash through puddles on a rainy street."

    def tokens(self, text: str) -> int:
        return max(1, math.ceil(len(text) / 4))

    def llm_seconds(self, tokens: int) -> float:
        return self.llm_prefill_seconds + self.llm_seconds_per_token * tokens

    def image_seconds(self, images: int) -> float:
        """Time the simulated GPU needs for `images` images when batched as well as possible."""
        calls = math.ceil(images / self.image_batch_size)
        return calls * self.image_seconds_per_call + self.image_seconds_per_extra_image * (images - calls)


@dataclass(frozen=True)
class InjectedCall:
    """One answered request; times are `time.perf_counter()` of this process."""

    service: str
    name: str  # "caption", "image", a json_schema name, or the kind of a plain-text request ("outline", "page", …)
    items: int
    tokens: int
    injected_seconds: float
    queue_seconds: float
    finished_at: float
    started_at: float = 0.0  # when the simulated work began (after any queueing)
    subject: str = ""  # what the call was about: an image's prompt, a page's beat, a translation's source
    marks: tuple[float, ...] = ()  # a streamed reply: when each of its lines had been sent (the last: the end)


@dataclass
class CallLog:
    """Every answered request with its injected latency; thread-safe (the services run in server threads)."""

    calls: list[InjectedCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, call: InjectedCall) -> None:
        with self._lock:
            self.calls.append(call)

    def since(self, started_at: float) -> list[InjectedCall]:
        with self._lock:
            return [call for call in self.calls if call.finished_at >= started_at]


def peak_in_flight(calls: list[InjectedCall], service: str) -> int:
    """The most calls of `service` whose simulated work overlapped at one moment: how many requests the stand-in
    really served side by side (a continuous-batching LLM server decodes all of them at once)."""
    edges = sorted((moment, change) for call in calls if call.service == service
                   for moment, change in ((call.started_at, 1), (call.finished_at, -1)))
    return max(itertools.accumulate(change for _, change in edges), default=0)


@dataclass(frozen=True)
class StandInEngine:
    """What a stand-in "loads": no model, only the simulated accelerator's call times.

    One call runs at a time (the frame's micro-batcher); it takes `seconds_per_call` plus `seconds_per_extra_item`
    for every item past the first, and a request larger than `max_batch` items takes as many calls as it needs.
    """

    service: str
    metrics: ServiceMetrics
    seconds_per_call: float = 0.0
    seconds_per_extra_item: float = 0.0
    max_batch: int = 1

    def info(self) -> EngineInfo:
        return EngineInfo(model=STAND_IN_MODEL, device="simulated", dtype="none", extra={"benchmark_only": True})

    def call_seconds(self, items: int) -> float:
        calls = math.ceil(items / self.max_batch)
        return calls * self.seconds_per_call + self.seconds_per_extra_item * (items - calls)


async def simulated_call(engine: StandInEngine, requests: list[int]) -> list[int]:
    """One simulated accelerator call for a batch of requests (each its item count): sleeps instead of computing."""
    items = sum(requests)
    await asyncio.sleep(engine.call_seconds(items))
    engine.metrics.generated_items.labels(engine.service).inc(items)
    return requests


def _stand_in_spec(
    name: str, routers: list[APIRouter], *, seconds_per_call: float = 0.0, seconds_per_extra_item: float = 0.0,
    max_batch: int | None = None, window_seconds: float = 0.0,
) -> ServiceSpec:
    """A stand-in declared as the real services are; `max_batch` (None: no batching) gives it a simulated accelerator
    behind the frame's micro-batcher, which routes reach as `app.state.batcher`."""
    batch: BatchSpec[StandInEngine, int, int] | None = None
    if max_batch is not None:
        batch = BatchSpec(run_batch=simulated_call, max_batch_size=max_batch, batch_timeout_s=window_seconds)

    def load(settings: Settings, device: str, metrics: ServiceMetrics) -> StandInEngine:
        return StandInEngine(name, metrics, seconds_per_call, seconds_per_extra_item, max_batch or 1)

    return ServiceSpec(
        name=name,
        title=f"Fabula {name} latency stand-in (benchmark only)",
        description="Sleeps for configured times instead of running a model; for timing the web app's orchestration.",
        resolver=lambda settings: None,
        load=load,
        routers=lambda settings: routers,
        batch=batch,
    )


def _accelerator(request: Request) -> MicroBatcher[int, int]:
    return request.app.state.batcher


def create_caption_app(profile: LatencyProfile, settings: Settings, log: CallLog) -> FastAPI:
    router = APIRouter(tags=["caption"])

    @router.post("/v1/caption", response_model=CaptionResponse)
    async def caption(
        request: Request,
        image: Annotated[UploadFile, File()],
        prompt: Annotated[str | None, Form()] = None,
        max_new_tokens: Annotated[int | None, Form()] = None,
    ) -> CaptionResponse:
        started = time.perf_counter()
        load_image(await image.read(), max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels)
        if max_new_tokens is not None and not 1 <= max_new_tokens <= settings.max_caption_tokens:
            raise InvalidRequest(f"`max_new_tokens` must be between 1 and {settings.max_caption_tokens}, not {max_new_tokens}.", param="max_new_tokens")
        outcome = await _accelerator(request).submit(1)
        text = profile.caption_text[: (max_new_tokens or 10**6) * 4]
        finished = time.perf_counter()
        log.add(InjectedCall("caption", "caption", 1, profile.tokens(text), outcome.inference_seconds, outcome.queue_seconds, finished,
                             finished - outcome.inference_seconds))
        timings = Timings(queue_seconds=outcome.queue_seconds, inference_seconds=outcome.inference_seconds, total_seconds=time.perf_counter() - started)
        return CaptionResponse(caption=text, model=STAND_IN_MODEL, prompt=prompt or "Describe this photo.", new_tokens=profile.tokens(text), timings=timings)

    spec = _stand_in_spec(
        "caption", [router], seconds_per_call=profile.caption_seconds, max_batch=profile.caption_batch_size,
        window_seconds=profile.batch_window_ms / 1000,
    )
    return spec.create_app(settings)


def stand_in_png(width: int, height: int, seed: int, limit: int) -> str:
    """A small real PNG (a seeded colour gradient), as base64; the aspect ratio of the requested size is kept."""
    scale = min(1.0, limit / max(width, height))
    width, height = max(8, int(width * scale)), max(8, int(height * scale))
    colours = np.random.default_rng(seed).integers(0, 256, size=(2, 3))
    ramp = np.linspace(0.0, 1.0, width)[None, :, None]
    row = colours[0] * (1 - ramp) + colours[1] * ramp
    pixels = np.repeat(row, height, axis=0).astype(np.uint8)
    return to_b64_png(Image.fromarray(pixels, "RGB"))


def create_illustrate_app(profile: LatencyProfile, settings: Settings, log: CallLog) -> FastAPI:
    router = APIRouter(tags=["illustrate"])

    @router.post("/v1/images/generations", response_model=ImageGenerationResponse)
    async def generate(request: Request, body: ImageGenerationRequest) -> ImageGenerationResponse:
        started = time.perf_counter()
        if body.n > settings.max_images_per_request:
            raise InvalidRequest(f"`n` is {body.n}; the limit is {settings.max_images_per_request} (FABULA_MAX_IMAGES_PER_REQUEST).", param="n")
        try:
            width, height = parse_size(body.size)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="size") from None
        for side in (width, height):
            if side % 8 or not settings.min_image_size <= side <= settings.max_image_size:
                raise InvalidRequest(
                    f"`size` sides must be multiples of 8 between {settings.min_image_size} and {settings.max_image_size}, not {body.size}.", param="size"
                )
        submitted = time.perf_counter()
        outcome = await _accelerator(request).submit(body.n, weight=body.n)
        seed = body.seed if body.seed is not None else int.from_bytes(hashlib.sha256(body.prompt.encode()).digest()[:4], "little")
        data = [ImageData(b64_json=stand_in_png(width, height, seed + index, profile.image_pixels), seed=seed + index) for index in range(body.n)]
        # The simulated call's own times, the same for every request it served (the PNGs are made after it).
        call_started = submitted + outcome.queue_seconds
        log.add(InjectedCall("illustrate", "image", body.n, 0, outcome.inference_seconds, outcome.queue_seconds,
                             call_started + outcome.inference_seconds, call_started, subject=body.prompt))
        timings = Timings(queue_seconds=outcome.queue_seconds, inference_seconds=outcome.inference_seconds, total_seconds=time.perf_counter() - started)
        return ImageGenerationResponse(created=int(time.time()), data=data, model=STAND_IN_MODEL, timings=timings)

    spec = _stand_in_spec(
        "illustrate", [router], seconds_per_call=profile.image_seconds_per_call, seconds_per_extra_item=profile.image_seconds_per_extra_image,
        max_batch=profile.image_batch_size, window_seconds=profile.batch_window_ms / 1000,
    )
    return spec.create_app(settings)


class ChatRequest(BaseModel):
    """The OpenAI request fields the stand-in reads; the rest (`seed`, `temperature`, `top_p`, the penalties,
    `stream_options`) are accepted and ignored, as the injected time does not depend on them."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: dict[str, Any] | None = None
    stream: bool = False
    seed: int | None = None


def chat_reply(body: ChatRequest, profile: LatencyProfile) -> TextReply:
    """The reply: a schema instance for `response_format` json_schema (its name is the call's name), otherwise the
    plain text an instruct model would write for the last user message (bench/stand_in_text.py)."""
    response_format = body.response_format or {"type": "text"}
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        if not isinstance(spec.get("schema"), dict):
            raise InvalidRequest("`response_format.json_schema.schema` must be a JSON schema object.", param="response_format")
        try:
            instance = schema_instance(spec["schema"], string_chars=profile.string_chars)
        except UnsupportedSchema as exc:
            raise InvalidRequest(f"`response_format.json_schema.schema`: {exc}.", param="response_format") from None
        return TextReply(json.dumps(instance, ensure_ascii=False), str(spec.get("name", "json_schema")))
    if kind == "json_object":
        return TextReply("{}", "json_object")
    if kind == "text":
        prompt = next((str(message.get("content", "")) for message in reversed(body.messages) if message.get("role") == "user"), "")
        return reply_to(prompt, chars=profile.string_chars, beat_chars=profile.beat_chars, seed=body.seed or 0)
    raise InvalidRequest(f"`response_format.type` must be text, json_object or json_schema, not {kind!r}.", param="response_format")


def _event(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def create_llm_app(profile: LatencyProfile, settings: Settings, log: CallLog) -> FastAPI:
    """Whole replies take the reply's injected time; streamed replies (`stream: true`, server-sent events in the
    OpenAI chunk shape) release one token (four characters) at a time at the same pace, so a streamed reply
    takes as long in all but its first lines arrive early."""
    router = APIRouter(tags=["llm"])
    # At most `llm_max_concurrent` replies at once (a server's slots); none: unlimited.
    limit: AbstractAsyncContextManager[Any] = asyncio.Semaphore(profile.llm_max_concurrent) if profile.llm_max_concurrent else nullcontext()

    @router.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": STAND_IN_MODEL, "object": "model", "created": 0, "owned_by": "fabula-bench"}]}

    @router.post("/v1/chat/completions", response_model=None)
    async def complete(request: Request, body: ChatRequest) -> dict[str, Any] | StreamingResponse:
        metrics: ServiceMetrics = request.app.state.metrics
        reply = chat_reply(body, profile)
        content, finish_reason = reply.text, "stop"
        budget = body.max_completion_tokens or body.max_tokens
        if budget is not None and profile.tokens(content) > budget:
            content, finish_reason = content[: budget * 4], "length"
        tokens = profile.tokens(content)
        frame = {"id": f"chatcmpl-{time.monotonic_ns()}", "created": int(time.time()), "model": body.model}
        queued = time.perf_counter()
        if body.stream:
            return StreamingResponse(_streamed(reply, content, finish_reason, frame, queued, metrics), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        async with limit:
            started = time.perf_counter()
            await asyncio.sleep(profile.llm_seconds(tokens))
        metrics.observe_batch(1, [started - queued])
        log.add(InjectedCall("llm", reply.kind, 1, tokens, profile.llm_seconds(tokens), started - queued, time.perf_counter(), started,
                             subject=reply.subject))
        prompt_tokens = profile.tokens("".join(str(message.get("content", "")) for message in body.messages))
        return {
            **frame, "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": tokens, "total_tokens": prompt_tokens + tokens},
        }

    async def _streamed(
        reply: TextReply, content: str, finish_reason: str, frame: dict[str, Any], queued: float, metrics: ServiceMetrics
    ) -> AsyncIterator[str]:
        """Token i is sent at start + prefill + (i + 1) × seconds per token (absolute deadlines, so the pace does
        not drift); the call is logged however the stream ends (a client may stop reading early)."""
        def chunk(delta: dict[str, str], finish: str | None = None) -> str:
            return _event({**frame, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        async with limit:
            started = time.perf_counter()
            pieces = [content[start : start + 4] for start in range(0, len(content), 4)]
            sent = 0
            marks: list[float] = []
            try:
                yield chunk({"role": "assistant", "content": ""})
                for index, piece in enumerate(pieces):
                    delay = started + profile.llm_seconds(index + 1) - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    yield chunk({"content": piece})
                    sent += 1
                    marks += [time.perf_counter()] * piece.count("\n")
                yield chunk({}, finish_reason)
                yield _event("[DONE]")
            finally:
                finished = time.perf_counter()
                metrics.observe_batch(1, [started - queued])
                log.add(InjectedCall("llm", reply.kind, 1, sent, profile.llm_seconds(sent), started - queued, finished, started,
                                     subject=reply.subject, marks=(*marks, finished)))

    return _stand_in_spec("llm", [router]).create_app(settings)


class LatencyServices:
    """The three stand-ins on free loopback ports in this process; `start()` returns settings that point at them."""

    def __init__(self, settings: Settings, profile: LatencyProfile | None = None) -> None:
        self.settings = settings
        self.profile = profile or LatencyProfile()
        self.log = CallLog()
        self.servers: dict[str, ServerThread] = {}

    def start(self, timeout_s: float = 30.0) -> Settings:
        from webapp.launcher import wait_ready

        factories = {"caption": create_caption_app, "illustrate": create_illustrate_app, "llm": create_llm_app}
        for name, factory in factories.items():
            self.servers[name] = ServerThread(factory(self.profile, self.settings, self.log)).start()
        for name, server in self.servers.items():
            wait_ready(server.url, name=name, timeout_s=timeout_s)
        return self.settings.model_copy(update={f"{name}_url": server.url for name, server in self.servers.items()} | {"llm_base_url": None})

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

    def __enter__(self) -> Settings:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

