"""A stand-in for a hosted OpenAI-compatible API (outside the product), for testing how the story writer copes
with servers that lack structured output or answer badly. Replies are scripted per test."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass
class ScriptedChatServer:
    replies: list[str]
    supports_json_schema: bool = False
    calls: list[dict] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def complete(request: Request) -> JSONResponse:
            body = await request.json()
            self.calls.append(body)
            if "response_format" in body and not self.supports_json_schema:
                return JSONResponse(
                    {"error": {"type": "invalid_request_error", "message": "response_format is not supported by this model", "param": "response_format"}},
                    status_code=400,
                )
            content = self.replies.pop(0) if self.replies else "I cannot help with that."
            return JSONResponse(
                {
                    "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": body.get("model", "m"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            )

        return app
