"""The OpenAI-compatible chat service: `POST /v1/chat/completions` and `GET /v1/models`.

Built in the shared service frame (health, readiness, metrics, auth, request ids, the body limit, JSON errors).
The model loads in the background at start-up; until then model routes answer 503 and `/readyz` says why. The
body is read by the shared bounded reader (depth-limited JSON); a client that leaves stops its generation.

The engines batch continuously inside themselves (every running request advances in each forward pass, and a new
one joins at the next pass), which a batcher in front, waiting for a whole batch to finish, would only slow
down. So the engine is the spec's batcher (`engine_batches`): the frame starts it once it is loaded and stops it
at shutdown, and the engine records each pass's real number of sequences in `fabula_batch_size`.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response

from services.llm.engine import ChatEngine
from services.llm.gguf import convert_gguf, gguf_file_for, is_gguf_model_id, tokenizer_folder
from services.llm.llama_engine import LlamaCppEngine
from services.llm.transformers_engine import TransformersEngine
from services.llm.preparation import prepare_generation
from services.llm.schemas import (
    AssistantMessage, ChatCompletion, ChatCompletionRequest, Choice, ModelCard, ModelList, chat_body_limit,
)
from services.llm.streaming import finish_reason_of, stream_completion, usage_of
from services.llm.tiny import build_tiny_chat_model
from shared.bodies import json_body_openapi, read_json_model
from shared.errors import ModelUnavailable, NotFound
from shared.logs import log_fields
from shared.metrics import ServiceMetrics
from shared.profiles import TINY, model_id_for, resolve_model_path, tiny_dir
from shared.request_lifetime import DeadlineDep, cancel_on_disconnect
from shared.service_app import ServiceSpec
from shared.settings import Settings

logger = logging.getLogger(__name__)

DESCRIPTION = (
    "An OpenAI-compatible chat service for self-hosting models offline: GGUF files on llama.cpp (concurrent requests "
    "decoded together), model folders on transformers. `response_format` with a JSON schema is enforced by "
    "constrained decoding (llguidance)."
)


def resolve_llm_model(settings: Settings) -> tuple[str, Path]:
    """The model id to answer with and the local folder to load (transformers); builds the tiny model on first use."""
    model_id = _configured_model(settings)
    if model_id == TINY:
        return TINY, build_tiny_chat_model(tiny_dir("llm", settings))
    if is_gguf_model_id(model_id):
        return model_id, convert_gguf(gguf_file_for(model_id), settings.models_dir)
    return model_id, resolve_model_path(model_id, role="llm", settings=settings)


def _configured_model(settings: Settings) -> str:
    model_id = model_id_for("llm", settings)
    if model_id is None:
        raise ModelUnavailable("FABULA_LLM_MODEL is empty; name a chat model or a local folder.", param="FABULA_LLM_MODEL")
    return model_id


def engine_for(settings: Settings) -> str:
    """Which engine runs the configured model: `llama.cpp` for GGUF files, `transformers` for folders and the tiny
    model, unless FABULA_LLM_ENGINE says otherwise."""
    choice = settings.llm_engine.strip().lower().replace("_", ".")
    if choice in ("llama.cpp", "llamacpp", "llama"):
        return "llama.cpp"
    if choice == "transformers":
        return "transformers"
    if choice != "auto":
        raise ModelUnavailable(f"FABULA_LLM_ENGINE is {settings.llm_engine!r}; use auto, llama.cpp or transformers.", param="FABULA_LLM_ENGINE")
    return "llama.cpp" if is_gguf_model_id(_configured_model(settings)) else "transformers"


def check_llm_model(settings: Settings) -> Path:
    """Fail fast (ModelUnavailable) when the configured model is not on this machine, preparing what its engine reads
    (the GGUF file's tokenizer for llama.cpp; the tiny model or a converted folder for transformers)."""
    if engine_for(settings) == "llama.cpp":
        gguf_file = gguf_file_for(_configured_model(settings))
        tokenizer_folder(gguf_file, settings.models_dir)
        return gguf_file
    return resolve_llm_model(settings)[1]


def load_engine(settings: Settings, device: str, metrics: ServiceMetrics | None = None) -> ChatEngine:
    """The configured model on its engine, ready to be started."""
    if engine_for(settings) == "llama.cpp":
        model_id = _configured_model(settings)
        if not is_gguf_model_id(model_id):
            raise ModelUnavailable(f"The llama.cpp engine runs GGUF files; '{model_id}' is not one (FABULA_LLM_ENGINE).", param="FABULA_LLM_MODEL")
        if device != "cpu":
            log_fields(logger, "the llama.cpp engine in this build runs on the CPU", device=device, level=logging.WARNING)
        gguf_file = gguf_file_for(model_id)
        return LlamaCppEngine.load(gguf_file, tokenizer_folder(gguf_file, settings.models_dir), model_id=model_id, settings=settings, metrics=metrics)
    model_id, path = resolve_llm_model(settings)
    return TransformersEngine.load(path, model_id=model_id, device=device, settings=settings, metrics=metrics)


def _engine(request: Request) -> ChatEngine:
    return request.app.state.holder.require()


EngineDep = Annotated[ChatEngine, Depends(_engine)]


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["chat"])

    @router.post(
        "/chat/completions",
        response_model=ChatCompletion,
        summary="Chat completion (OpenAI shape); `stream: true` answers with server-sent events.",
        responses={200: {"content": {"text/event-stream": {}}}},
        openapi_extra=json_body_openapi(ChatCompletionRequest),
    )
    async def chat_completions(request: Request, engine: EngineDep, deadline: DeadlineDep) -> Response | ChatCompletion:
        settings: Settings = request.app.state.settings
        body = await read_json_model(request, ChatCompletionRequest, chat_body_limit(settings))
        generation = await prepare_generation(body, engine, settings)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return stream_completion(engine, generation, completion_id=completion_id, created=created, include_usage=include_usage, deadline=deadline)
        result = await cancel_on_disconnect(request, engine.complete(generation, deadline=deadline))
        return ChatCompletion(
            id=completion_id,
            created=created,
            model=engine.model_id,
            choices=[Choice(message=AssistantMessage(content=result.text), finish_reason=finish_reason_of(result))],
            usage=usage_of(result),
        )

    @router.get("/models", response_model=ModelList, summary="The loaded model (OpenAI list shape).")
    async def list_models(engine: EngineDep) -> ModelList:
        return ModelList(data=[_card(engine)])

    @router.get("/models/{model_id:path}", response_model=ModelCard, summary="One model, if it is the loaded one.")
    async def get_model(model_id: str, engine: EngineDep) -> ModelCard:
        if model_id != engine.model_id:
            raise NotFound(f"The model '{model_id}' is not served here; this server runs '{engine.model_id}'.", param="model")
        return _card(engine)

    return router


def _card(engine: ChatEngine) -> ModelCard:
    return ModelCard(id=engine.model_id, created=int(engine.loaded_at), max_model_len=engine.context_length)


SPEC = ServiceSpec(
    name="llm",
    title="Fabula LLM",
    description=DESCRIPTION,
    resolver=check_llm_model,
    load=load_engine,
    routers=lambda _: [build_router()],
    body_limit=chat_body_limit,
    engine_batches=True,
)


def create_app(settings: Settings, *, device: str = "cpu") -> FastAPI:
    return SPEC.create_app(settings, device=device)
