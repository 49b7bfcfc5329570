"""The narrate service: `POST /v1/audio/speech` (OpenAI's shape, plus `language`) and `GET /v1/audio/voices`.

Built in the shared service frame (health, readiness, metrics, auth, request ids, JSON errors, the batcher). A
book asks for all its sentences at once: the requests that arrive within the batch window (FABULA_BATCH_WINDOW_MS)
are spoken together, each voice and encoder a pair of subprocesses in its own worker thread, at most one per CPU
this process may use. The time a request waits for its batch is its queue time, and `fabula_batch_size` shows how
many sentences were spoken together. A batch is never cut short: a client that leaves before its batch is dropped,
one that leaves during it leaves its processes to finish, so no CPU is busy for a request nobody counts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response

from services.narrate.audio import FORMATS, Pcm, encode
from services.narrate.espeak import EspeakEngine, find_espeak
from services.narrate.languages import all_languages, find_speech_language
from services.narrate.metrics import SpeechMetrics
from services.narrate.schemas import SpeechRequest, VoiceCard, VoiceList
from services.narrate.validation import Utterance, check_speech_request, speech_body_limit, too_long
from shared.batching import Batched, BatchSpec, MicroBatcher
from shared.bodies import json_body_openapi, read_json_model
from shared.errors import ModelUnavailable
from shared.logs import log_fields
from shared.metrics import ServiceMetrics
from shared.request_lifetime import DeadlineDep, cancel_on_disconnect
from shared.service_app import ServiceSpec
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


def load_engine(settings: Settings, device: str, metrics: ServiceMetrics | None = None) -> EspeakEngine:
    """espeak-ng; `device` is accepted like the other services' but unused: it runs on the CPU."""
    _, executable = resolve_narrate_model(settings)
    return EspeakEngine.load(executable)


@dataclass(frozen=True)
class Speech:
    """One request's audio: the samples (for their length), the encoded bytes, and the seconds they took."""

    pcm: Pcm
    audio: bytes
    seconds: float


def speak(engine: EspeakEngine, utterance: Utterance) -> Speech:
    """Speak and encode; audio past FABULA_MAX_SPEECH_SECONDS (the estimate was short) is refused before encoding."""
    started = time.perf_counter()
    pcm = engine.speak(utterance.text, utterance.voice, speed=utterance.speed)
    if pcm.duration > utterance.max_seconds:
        raise too_long(pcm.duration, utterance.speed, utterance.max_seconds, measured=True)
    return Speech(pcm, encode(pcm, utterance.audio_format), time.perf_counter() - started)


async def speak_batch(engine: EspeakEngine, utterances: list[Utterance]) -> list[Speech | BaseException]:
    """Speak the gathered requests together, one worker thread each, and wait for all; one that fails fails alone."""
    spoken = await asyncio.gather(*(asyncio.to_thread(speak, engine, utterance) for utterance in utterances), return_exceptions=True)
    return list(spoken)


def _engine(request: Request) -> EspeakEngine:
    return request.app.state.holder.require()


EngineDep = Annotated[EspeakEngine, Depends(_engine)]

# The body is read by hand (bounded, and a malformed body gets a message naming `body`); this tells the
# OpenAPI document what it holds.
_REQUEST_BODY = json_body_openapi(SpeechRequest)
_AUDIO_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {fmt.content_type: {} for fmt in FORMATS.values()}}}


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1/audio", tags=["speech"])

    @router.post(
        "/speech", openapi_extra=_REQUEST_BODY, responses=_AUDIO_RESPONSES, response_class=Response,
        summary="Read text aloud (OpenAI speech shape). Headers: X-Audio-Duration (seconds), X-Voice (the voice used).",
    )
    async def speech(request: Request, engine: EngineDep, deadline: DeadlineDep) -> Response:
        settings: Settings = request.app.state.settings
        body = await read_json_model(request, SpeechRequest, speech_body_limit(settings))
        utterance = check_speech_request(body, engine, settings)
        batcher: MicroBatcher[Utterance, Speech] = request.app.state.batcher
        batched: Batched[Speech] = await cancel_on_disconnect(request, batcher.submit(utterance, deadline=deadline))
        spoken = batched.result
        metrics: ServiceMetrics = request.app.state.metrics
        metrics.generated_items.labels(SERVICE).inc()
        request.app.state.speech_metrics.observe(
            engine=engine.model_id, audio_format=utterance.audio_format.name,
            synthesis_seconds=spoken.seconds, audio_seconds=spoken.pcm.duration,
        )
        log_fields(logger, "spoke", voice=utterance.voice.id, language=utterance.language.code,
                   characters=len(utterance.text),
                   audio_seconds=round(spoken.pcm.duration, 3), synthesis_seconds=round(spoken.seconds, 4),
                   batch_size=batched.batch_requests, queue_seconds=round(batched.queue_seconds, 4), level=logging.DEBUG)
        return Response(
            content=spoken.audio, media_type=utterance.audio_format.content_type,
            headers={"X-Audio-Duration": f"{spoken.pcm.duration:.3f}", "X-Voice": utterance.voice.id},
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


SPEC = ServiceSpec(
    name=SERVICE,
    title="Fabula narrate service",
    description="Reads a book's text aloud in its language, in OpenAI's speech shape; espeak-ng offline.",
    resolver=resolve_narrate_model,
    load=load_engine,
    routers=lambda _: [build_router()],
    body_limit=speech_body_limit,
    batch=BatchSpec(run_batch=speak_batch, max_batch_size=synthesis_slots()),
    state=lambda _, metrics: {"speech_metrics": SpeechMetrics(metrics)},
)


def create_app(settings: Settings | None = None, *, device: str = "cpu") -> FastAPI:
    """The narrate app. `device` is accepted like the other services' but unused: espeak-ng runs on the CPU."""
    return SPEC.create_app(settings or get_settings(), device=device)
