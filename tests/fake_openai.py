"""A stand-in for a hosted OpenAI-compatible API (outside the product), for testing how the story writer copes
with servers that cannot stream, report a small context, or answer badly. Replies are scripted per test; each
reply is used once, in order, and every request body is kept in `calls`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse


@dataclass
class ScriptedChatServer:
    replies: list[str]
    supports_streaming: bool = False
    supports_penalties: bool = True
    max_model_len: int | None = None
    calls: list[dict] = field(default_factory=list)
    fallback_reply: str = "I cannot help with that."

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models")
        async def models() -> JSONResponse:
            card: dict = {"id": "hosted-model", "object": "model", "created": 0, "owned_by": "test"}
            if self.max_model_len:
                card["max_model_len"] = self.max_model_len
            return JSONResponse({"object": "list", "data": [card]})

        @app.post("/v1/chat/completions")
        async def complete(request: Request) -> Response:
            body = await request.json()
            self.calls.append(body)
            if body.get("stream") and not self.supports_streaming:
                return _refusal("stream is not supported by this server", "stream")
            if not self.supports_penalties and ("frequency_penalty" in body or "presence_penalty" in body):
                return _refusal("frequency_penalty is not supported", "frequency_penalty")
            content = self.replies.pop(0) if self.replies else self.fallback_reply
            if body.get("stream"):
                return StreamingResponse(_chunks(content, body.get("model", "m")), media_type="text/event-stream")
            return JSONResponse(
                {
                    "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": body.get("model", "m"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            )

        return app


def _refusal(message: str, param: str) -> JSONResponse:
    return JSONResponse({"error": {"type": "invalid_request_error", "message": message, "param": param}}, status_code=400)


async def _chunks(content: str, model: str):
    for index in range(0, len(content), 7):
        chunk = {
            "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": {"content": content[index : index + 7]}, "finish_reason": None}],
        }
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"
