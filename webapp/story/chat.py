"""Plain-text chat calls to any OpenAI-compatible server, with token budgets fitted to the model's context.

The server's context length comes from `GET /v1/models` where the server reports it (vLLM's `max_model_len`,
Fabula's llm service reports the same field; `context_length` and `context_window` are read too); without it the
budget assumes `DEFAULT_CONTEXT`. Every call asks for what its piece needs, capped so prompt and answer fit the
context; a server that still says the answer does not fit gets one more call with the room it names.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import openai

from shared.errors import FabulaError, UpstreamError

logger = logging.getLogger(__name__)

DEFAULT_CONTEXT = 8192
MIN_ANSWER_TOKENS = 16
CONTEXT_FIELDS = ("max_model_len", "context_length", "context_window", "max_context_length")
_ROOM = re.compile(r"at most (\d+)")


class StoryWriterError(FabulaError):
    status_code = 502
    error_type = "story_writer_error"


@dataclass(frozen=True)
class Sampling:
    """How the writer samples: some variety, and penalties that keep small models from looping."""

    temperature: float = 0.7
    top_p: float = 0.9
    frequency_penalty: float = 0.4
    presence_penalty: float = 0.2


def estimate_prompt_tokens(messages: list[dict[str, str]]) -> int:
    """A generous estimate (three characters a token, plus the chat template's markers): budgets must not overflow."""
    return sum(len(message["content"]) // 3 + 8 for message in messages) + 16


class ChatCaller:
    def __init__(self, client: openai.AsyncOpenAI, *, model: str, sampling: Sampling | None = None) -> None:
        self.client = client
        self.model = model
        self.sampling = sampling or Sampling()
        self.streaming = True  # switched off once a server says it cannot stream
        self.penalties = True  # switched off once a server refuses them
        self._context: int | None = None

    async def context_length(self) -> int:
        """The model's context in tokens, asked of the server once."""
        if self._context is None:
            self._context = await self._ask_context() or DEFAULT_CONTEXT
        return self._context

    async def _ask_context(self) -> int | None:
        try:
            listing = await self.client.models.list()
        except (openai.APIError, openai.APIConnectionError) as exc:
            logger.info("the LLM server does not list its models (%s); assuming a context of %d", type(exc).__name__, DEFAULT_CONTEXT)
            return None
        cards = list(listing.data)
        chosen = next((card for card in cards if card.id == self.model), cards[0] if len(cards) == 1 else None)
        if chosen is None:
            return None
        extra = chosen.model_extra or {}
        for name in CONTEXT_FIELDS:
            value = extra.get(name)
            if isinstance(value, int) and value > 0:
                return value
        return None

    async def fit(self, messages: list[dict[str, str]], wanted: int) -> int:
        """`wanted` answer tokens, or as many as fit beside the prompt; a plain error when not even a few fit."""
        context = await self.context_length()
        prompt = estimate_prompt_tokens(messages)
        room = context - prompt
        if room < MIN_ANSWER_TOKENS:
            raise StoryWriterError(
                f"The language model's context ({context} tokens) is too small for this book: the prompt alone takes "
                f"about {prompt}. Choose fewer pages, or a model with a longer context (FABULA_LLM_MODEL)."
            )
        return max(MIN_ANSWER_TOKENS, min(wanted, room))

    async def complete(self, messages: list[dict[str, str]], *, max_tokens: int, seed: int) -> str:
        budget = await self.fit(messages, max_tokens)
        try:
            completion = await self._create(messages, budget, seed, stream=False)
        except _NeedsRoom as room:
            completion = await self._create(messages, room.tokens, seed, stream=False)
        return completion.choices[0].message.content or ""

    async def stream(self, messages: list[dict[str, str]], *, max_tokens: int, seed: int) -> AsyncGenerator[str, None]:
        """Text as it is written; a server that cannot stream answers whole, and that answer is yielded at once."""
        budget = await self.fit(messages, max_tokens)
        if not self.streaming:
            yield await self.complete(messages, max_tokens=budget, seed=seed)
            return
        try:
            chunks = await self._create(messages, budget, seed, stream=True)
        except _NeedsRoom as room:
            chunks = await self._create(messages, room.tokens, seed, stream=True)
        except _CannotStream:
            self.streaming = False
            yield await self.complete(messages, max_tokens=budget, seed=seed)
            return
        try:
            async for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise UpstreamError(f"The language model server stopped answering: {exc}", transient=True) from None
        finally:
            await chunks.close()

    async def _create(self, messages: list[dict[str, str]], max_tokens: int, seed: int, *, stream: bool):  # -> ChatCompletion | AsyncStream
        kwargs: dict = {
            "model": self.model, "messages": messages, "max_tokens": max_tokens, "seed": seed,
            "temperature": self.sampling.temperature, "top_p": self.sampling.top_p, "stream": stream,
        }
        if self.penalties:
            kwargs |= {"frequency_penalty": self.sampling.frequency_penalty, "presence_penalty": self.sampling.presence_penalty}
        try:
            return await self.client.chat.completions.create(**kwargs)
        except openai.BadRequestError as exc:
            message = _openai_message(exc)
            lowered = message.lower()
            if self.penalties and "penalty" in lowered:
                self.penalties = False
                return await self._create(messages, max_tokens, seed, stream=stream)
            if stream and "stream" in lowered:
                raise _CannotStream() from None
            room = _ROOM.search(message)
            if room and ("max_tokens" in lowered or "context" in lowered) and int(room.group(1)) >= MIN_ANSWER_TOKENS and int(room.group(1)) < max_tokens:
                raise _NeedsRoom(int(room.group(1))) from None
            raise StoryWriterError(f"The language model refused the request: {message}") from None
        except openai.AuthenticationError as exc:
            raise UpstreamError(f"The language model server refused the API key (FABULA_LLM_API_KEY): {_openai_message(exc)}") from None
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise UpstreamError(f"The language model server cannot be reached: {exc}", transient=True) from None
        except openai.APIStatusError as exc:
            transient = exc.status_code >= 500 or exc.status_code == 429
            raise UpstreamError(f"The language model server failed: {_openai_message(exc)}", transient=transient) from None


class _NeedsRoom(Exception):
    def __init__(self, tokens: int) -> None:
        self.tokens = tokens


class _CannotStream(Exception):
    pass


def _openai_message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    return str(error.get("message") if isinstance(error, dict) and error.get("message") else exc.message)
