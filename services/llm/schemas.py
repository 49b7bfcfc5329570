"""The wire of the OpenAI-compatible chat API: `POST /v1/chat/completions` and `GET /v1/models`.

Shapes follow OpenAI's Chat Completions API so that `openai.OpenAI(base_url=...)` works unchanged. Limits that
depend on settings (`max_tokens`, total message size) are checked by the route, which knows the settings.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.bodies import BodyLimit
from shared.settings import Settings

# A message character is at most 12 bytes of JSON (an escaped surrogate pair); the rest (a JSON schema for
# `response_format`, the other fields) fits in the overhead.
_BYTES_PER_MESSAGE_CHARACTER = 12
_BODY_OVERHEAD_BYTES = 256 * 1024


def chat_body_limit(settings: Settings) -> BodyLimit:
    """The most a chat request body may be: every message at FABULA_MAX_CHAT_MESSAGES_CHARS, plus the rest."""
    limit = settings.max_chat_messages_chars * _BYTES_PER_MESSAGE_CHARACTER + _BODY_OVERHEAD_BYTES
    return BodyLimit(max_bytes=limit, param="body", rule=f"the limit is {limit:,} bytes (it follows FABULA_MAX_CHAT_MESSAGES_CHARS)")


Role = Literal["system", "developer", "user", "assistant"]


class ChatMessage(BaseModel):
    """One message; `content` is a string or a list of text parts, which are joined with newlines."""

    model_config = ConfigDict(extra="ignore")

    role: Role = Field(description="`system` (or `developer`), `user` or `assistant`.")
    content: str = Field(description="A string, or a list of `{\"type\": \"text\", \"text\": ...}` parts.")
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _join_text_parts(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("content is required (a string or a list of text parts)")
        if not isinstance(value, list):
            return value
        texts: list[str] = []
        for index, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ValueError(f"part {index} has type {kind!r}; only text parts ({{\"type\": \"text\", \"text\": ...}}) are supported")
            if not isinstance(part.get("text"), str):
                raise ValueError(f"part {index} needs a string `text`")
            texts.append(part["text"])
        return "\n".join(texts)

    def for_template(self) -> dict[str, str]:
        """The message as chat templates expect it; `developer` is the newer name for `system`."""
        return {"role": "system" if self.role == "developer" else self.role, "content": self.content}


class JsonSchemaFormat(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema", description="A JSON schema (an object).")
    strict: bool | None = None

    model_config = ConfigDict(populate_by_name=True)


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The OpenAI request body. Unknown fields are ignored, as OpenAI-compatible servers commonly do."""

    model_config = ConfigDict(extra="ignore")

    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = Field(default=None, description="Accepted for compatibility; the loaded model answers.")
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    frequency_penalty: float | None = Field(
        default=None, ge=-2.0, le=2.0, description="OpenAI's: lowers a token's logit by this much for every time it was already written."
    )
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0, description="OpenAI's: lowers a token's logit by this much once it was written.")
    n: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    logprobs: bool | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError(f"at most 4 stop sequences are allowed, not {len(value)}")
        return value

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: str | None = None


# OpenAI's finish reasons for a chat answer: "length" when the token budget cut it, "stop" for every other end.
FinishReason = Literal["stop", "length"]


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "fabula"
    max_model_len: int | None = Field(default=None, description="The model's context in tokens (prompt and answer together), as vLLM reports it.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
