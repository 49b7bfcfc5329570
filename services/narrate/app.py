"""The narrate service: `POST /v1/audio/speech` (OpenAI's shape, plus `language`) and `GET /v1/audio/voices`.

Built in the shared service frame (health, readiness, metrics, auth, request ids, JSON errors). Each request
runs its voice and encoder as subprocesses in worker threads; a semaphore sized from the CPU count caps how many
run at once, and the time a request waits for one is its queue time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response

from services.narrate.audio import FORMATS, encode
from services.narrate.espeak import EspeakEngine, find_espeak
from services.narrate.languages import all_languages, find_speech_language
from services.narrate.metrics import SpeechMetrics
from services.narrate.schemas import SpeechRequest, VoiceCard, VoiceList
from services.narrate.validation import check_speech_request, speech_body_limit
from shared.bodies import json_body_openapi, read_json_model
from shared.errors import ModelUnavailable
from shared.logs import log_fields
from shared.metrics import ServiceMetrics
from shared.model_holder import ModelHolder
from shared.service_app import create_service_app
from shared.settings import Settings, get_settings

logger = logging.getLogger(__name__)

SERVICE = "narrate"
ESPEAK = "espeak-ng"
KOKORO = "kokoro"


def resolve_narrate_model(settings: Settings) -> tuple[str, str]:
    """The engine to speak with and the program that runs it; raises `ModelUnavailable` without waiting."""
    requested = (settings.narrate_model or ESPEAK).strip().lower()
    if requested in (ESPEAK, "espeak"):
        return ESPEAK, find_espeak()
    if requested == KOKORO:
        raise ModelUnavailable(
            "FABULA_NARRATE_MODEL=kokoro: the Kokoro neural voice is not part of this release (its English reader "
            "downloads a spaCy model at run time); set FABULA_NARRATE_MODEL=espeak-ng.",
            param="FABULA_NARRATE_MODEL",
        )
    raise ModelUnavailable(
        f"FABULA_NARRATE_MODEL={settings.narrate_model!r} is not a voice engine here; set it to espeak-ng.",
        param="FABULA_NARRATE_MODEL",
    )


def synthesis_slots() -> int:
    """How many voices may speak at once: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without CPU affinity
        return max(1, os.cpu_count() or 1)


def _engine(request: Request) -> EspeakEngine:
    return request.app.state.holder.require()


EngineDep = Annotated[EspeakEngine, Depends(_engine)]

# The body is read by hand (bounded, and a malformed body gets a message naming `body`); this tells the
# OpenAPI document what it holds.
_REQUEST_BODY = json_body_openapi(SpeechRequest)
_AUDIO_RESPONSES = {200: {"content": {fmt.content_type: {} for fmt in FORMATS.values()}}}


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1/audio", tags=["speech"])

    @router.post(
        "/speech", openapi_extra=_REQUEST_BODY, responses=_AUDIO_RESPONSES, response_class=Response,
        summary="Read text aloud (OpenAI speech shape). Headers: X-Audio-Duration (seconds), X-Voice (the voice used).",
    )
    async def speech(request: Request, engine: EngineDep) -> Response:
        settings: Settings = request.app.state.settings
        body = await read_json_model(request, SpeechRequest, speech_body_limit(settings))
        job = check_speech_request(body, engine, settings)
        arrived = time.perf_counter()
        async with request.app.state.synthesis_slots:
            started = time.perf_counter()
            # The slot is held until the processes end, even when the client leaves: a cancelled request must not
            # free a CPU its espeak-ng and ffmpeg are still using.
            def speak_and_encode():  # type: ignore[no-untyped-def]
                spoken = engine.speak(job.text, job.voice, speed=job.speed)
                return spoken, encode(spoken, job.audio_format)

            work = asyncio.ensure_future(asyncio.to_thread(speak_and_encode))
            try:
                pcm, audio = await asyncio.shield(work)
            except asyncio.CancelledError:
                await asyncio.wait([work])
                raise
            finished = time.perf_counter()
        metrics: ServiceMetrics = request.app.state.metrics
        metrics.observe_batch(1, [started - arrived])
        metrics.generated_items.labels(SERVICE).inc()
        request.app.state.speech_metrics.observe(
            engine=engine.model_id, audio_format=job.audio_format.name,
            synthesis_seconds=finished - started, audio_seconds=pcm.duration,
        )
        log_fields(logger, "spoke", voice=job.voice.id, language=job.language.code, characters=len(job.text),
                   audio_seconds=round(pcm.duration, 3), synthesis_seconds=round(finished - started, 4))
        return Response(
            content=audio, media_type=job.audio_format.content_type,
            headers={"X-Audio-Duration": f"{pcm.duration:.3f}", "X-Voice": job.voice.id},
        )

    @router.get("/voices", response_model=VoiceList, summary="The voices per language, with the OpenAI names each answers to.")
    async def voices(
        engine: EngineDep,
        language: Annotated[str | None, Query(max_length=35, description="Only this language's voices (en, pt-BR, ko ...).")] = None,
    ) -> VoiceList:
        languages = [find_speech_language(language)] if language else all_languages()
        cards: list[VoiceCard] = []
        for spoken in languages:
            if language is None and not engine.catalogue.voices(spoken):
                continue
            aliases = engine.catalogue.aliases(spoken)
            cards.extend(
                VoiceCard(
                    id=voice.id, name=voice.name, language=voice.language, locale=voice.locale, gender=voice.gender,
                    engine=engine.model_id, licence=engine.licence,
                    aliases=[name for name, voice_id in aliases.items() if voice_id == voice.id],
                )
                for voice in engine.catalogue.require_voices(spoken)
            )
        return VoiceList(data=cards)

    return router


def create_app(settings: Settings | None = None, *, device: str = "cpu") -> FastAPI:
    """The narrate app. `device` is accepted like the other services' but unused: espeak-ng runs on the CPU."""
    settings = settings or get_settings()
    metrics = ServiceMetrics(SERVICE)

    def load() -> EspeakEngine:
        _, executable = resolve_narrate_model(settings)
        return EspeakEngine.load(executable)

    holder: ModelHolder[EspeakEngine] = ModelHolder(load, name=SERVICE)

    async def open_slots(app: FastAPI) -> None:
        app.state.synthesis_slots = asyncio.Semaphore(synthesis_slots())

    app = create_service_app(
        name=SERVICE,
        title="Fabula narrate service",
        description="Reads a book's text aloud in its language, in OpenAI's speech shape; espeak-ng offline.",
        settings=settings,
        holder=holder,
        metrics=metrics,
        routers=[build_router()],
        on_startup=open_slots,
    )
    app.state.speech_metrics = SpeechMetrics(metrics)
    return app
