"""From an OpenAI request body to a `GenerationRequest`: every limit checked before any model work.

Each refusal is an `InvalidRequest` (HTTP 400) whose message names the field, the value and the rule, and
whose `param` is the field, as OpenAI does.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from services.llm.engine import ChatEngine, GenerationRequest
from services.llm.json_closing import SEARCH_LIMIT
from services.llm.matcher import GrammarMatcher
from services.llm.schemas import ChatCompletionRequest
from shared.errors import InvalidRequest
from shared.settings import Settings

DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 1.0
SEED_MASK = (1 << 63) - 1


async def prepare_generation(body: ChatCompletionRequest, engine: ChatEngine, settings: Settings) -> GenerationRequest:
    _refuse_unsupported(body)
    max_tokens, max_tokens_param = _requested_max_tokens(body, settings)
    total_chars = sum(len(message.content) for message in body.messages)
    if total_chars > settings.max_chat_messages_chars:
        raise InvalidRequest(
            f"`messages` hold {total_chars:,} characters in all; the limit is {settings.max_chat_messages_chars:,} "
            f"(FABULA_MAX_CHAT_MESSAGES_CHARS).",
            param="messages",
        )
    prompt_ids = await run_in_threadpool(engine.encode_prompt, [message.for_template() for message in body.messages])
    if max_tokens is None:
        room = engine.context_length - len(prompt_ids) if engine.context_length else settings.max_chat_tokens
        max_tokens = max(1, min(settings.max_chat_tokens, room))
    engine.check_context(len(prompt_ids), max_tokens, max_tokens_param=max_tokens_param)
    grammar = await _grammar_for(body, engine, max_tokens=max_tokens, max_tokens_param=max_tokens_param)
    return GenerationRequest(
        prompt_ids=prompt_ids,
        max_tokens=max_tokens,
        temperature=DEFAULT_TEMPERATURE if body.temperature is None else body.temperature,
        top_p=DEFAULT_TOP_P if body.top_p is None else body.top_p,
        frequency_penalty=body.frequency_penalty or 0.0,
        presence_penalty=body.presence_penalty or 0.0,
        stop=body.stop_sequences(),
        seed=None if body.seed is None else body.seed & SEED_MASK,
        grammar=grammar,
    )


def _refuse_unsupported(body: ChatCompletionRequest) -> None:
    if body.n is not None and body.n != 1:
        raise InvalidRequest(f"`n` is {body.n}; this server writes one choice per request, so `n` must be 1.", param="n")
    if body.tools:
        raise InvalidRequest("`tools` are not supported by this server; use `response_format` for structured output.", param="tools")
    if body.logprobs:
        raise InvalidRequest("`logprobs` are not supported by this server.", param="logprobs")


def _requested_max_tokens(body: ChatCompletionRequest, settings: Settings) -> tuple[int | None, str]:
    """`max_completion_tokens` (the current name) wins over `max_tokens` (the older one)."""
    value: int | None
    if body.max_completion_tokens is not None:
        value, param = body.max_completion_tokens, "max_completion_tokens"
    else:
        value, param = body.max_tokens, "max_tokens"
    if value is not None and value > settings.max_chat_tokens:
        raise InvalidRequest(
            f"`{param}` is {value}; the limit is {settings.max_chat_tokens} (FABULA_MAX_CHAT_TOKENS).", param=param
        )
    return value, param


async def _grammar_for(body: ChatCompletionRequest, engine: ChatEngine, *, max_tokens: int, max_tokens_param: str) -> GrammarMatcher | None:
    response_format = body.response_format
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_schema":
        if response_format.json_schema is None:
            raise InvalidRequest(
                "`response_format.json_schema` is required when `response_format.type` is \"json_schema\".",
                param="response_format.json_schema",
            )
        schema = response_format.json_schema.schema_
    else:
        schema = None
    grammar = await run_in_threadpool(engine.grammars.compile, schema)
    needed = await run_in_threadpool(engine.grammars.minimum_tokens, grammar, limit=SEARCH_LIMIT)
    if needed is not None and needed > max_tokens:
        raise InvalidRequest(
            f"`{max_tokens_param}` is {max_tokens}, but the shortest answer that satisfies `response_format` takes "
            f"up to {needed} tokens; raise `{max_tokens_param}` or loosen the schema.",
            param=max_tokens_param,
        )
    return grammar
