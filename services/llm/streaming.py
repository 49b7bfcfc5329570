"""Server-sent events in OpenAI's `chat.completion.chunk` shape, ending with `data: [DONE]`.

A client that goes away mid-stream stops its generation: the response sets the generation's cancel flag
however it ends (finished, client disconnected, server shutting down), and the token loop checks the flag
before every token, so the next request in the queue starts at once.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from services.llm.engine import FINISH_CANCELLED, FINISH_LENGTH, ChatEngine, GenerationRequest, GenerationResult
from services.llm.schemas import ChatCompletionChunk, ChunkChoice, ChunkDelta, FinishReason, Usage
from shared.errors import FabulaError
from shared.http_errors import internal_error

logger = logging.getLogger(__name__)


class GenerationStreamResponse(StreamingResponse):
    """A streaming response that always cancels its generation when it ends, however it ends."""

    def __init__(self, content: AsyncIterator[str], *, cancelled: threading.Event) -> None:
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.cancelled = cancelled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.cancelled.set()


def stream_completion(
    engine: ChatEngine, generation: GenerationRequest, *, completion_id: str, created: int, include_usage: bool, deadline: float | None = None
) -> GenerationStreamResponse:
    cancelled = threading.Event()
    writer = _ChunkWriter(completion_id=completion_id, created=created, model=engine.model_id, include_usage=include_usage)
    return GenerationStreamResponse(_events(engine, generation, cancelled, writer, deadline), cancelled=cancelled)


@dataclass(frozen=True)
class _ChunkWriter:
    """Writes one completion's events; every chunk carries the same id, creation time and model."""

    completion_id: str
    created: int
    model: str
    include_usage: bool

    def delta(self, delta: ChunkDelta, finish_reason: FinishReason | None = None) -> str:
        body = self._chunk([ChunkChoice(delta=delta, finish_reason=finish_reason)])
        data = body.model_dump(mode="json")
        data["choices"][0]["delta"] = delta.model_dump(mode="json", exclude_none=True)
        if not self.include_usage:
            data.pop("usage")
        return _event(data)

    def usage(self, result: GenerationResult) -> str:
        """OpenAI's last chunk when `stream_options.include_usage` is set: no choices, only the token counts."""
        return _event(self._chunk([], usage=usage_of(result)).model_dump(mode="json"))

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=self.completion_id, created=self.created, model=self.model, choices=choices, usage=usage)


async def _events(
    engine: ChatEngine, generation: GenerationRequest, cancelled: threading.Event, writer: _ChunkWriter, deadline: float | None
) -> AsyncIterator[str]:
    result: GenerationResult | None = None
    yield writer.delta(ChunkDelta(role="assistant", content=""))
    try:
        async for item in engine.stream(generation, cancelled, deadline=deadline):
            if isinstance(item, GenerationResult):
                result = item
            elif item:
                yield writer.delta(ChunkDelta(content=item))
    except FabulaError as exc:
        yield _event(exc.to_body())
        return
    except Exception:  # noqa: BLE001 - the status line is already sent; tell the client in-band
        logger.exception("chat stream failed")
        yield _event(internal_error().to_body())
        return
    if result is None or result.finish_reason == FINISH_CANCELLED:
        return
    yield writer.delta(ChunkDelta(), finish_reason=finish_reason_of(result))
    if writer.include_usage:
        yield writer.usage(result)
    yield "data: [DONE]\n\n"


def finish_reason_of(result: GenerationResult) -> FinishReason:
    """The engine's finish as OpenAI spells it: "length" when the budget cut the answer, "stop" for every other end."""
    return "length" if result.finish_reason == FINISH_LENGTH else "stop"


def usage_of(result: GenerationResult) -> Usage:
    return Usage(
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        total_tokens=result.prompt_tokens + result.completion_tokens,
    )


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"
