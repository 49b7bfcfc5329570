"""The LLM step, through the `openai` client, against any OpenAI-compatible server.

Structured output first (`response_format` json_schema); a server that refuses it gets the schema in the prompt
and its JSON is parsed from the text; either way a reply that does not validate gets exactly one repair request.
A plan that still fails ends the job with a `StoryWriterError` that says so in plain words.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from typing import TypeVar

import openai
from pydantic import BaseModel, ValidationError

from shared.errors import FabulaError, UpstreamError
from webapp.story import prompts
from webapp.story.options import StoryOptions
from webapp.story.plan import (
    Character,
    LengthBudget,
    OutlinePage,
    PlanPage,
    StoryOutline,
    StoryPlan,
    Translation,
    outline_model,
    page_text_model,
    pages_model,
    texts_model,
    translation_model,
)

logger = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=BaseModel)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class StoryWriterError(FabulaError):
    status_code = 502
    error_type = "story_writer_error"


def clean_text(text: str) -> str:
    """Generated text as it may be printed: no control characters, normalised Unicode, trimmed."""
    return unicodedata.normalize("NFC", _CONTROL.sub("", text)).strip()


def extract_json(text: str) -> object:
    """The JSON object in a model's reply, with or without code fences or prose around it."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    candidate = fenced.group(1) if fenced else text
    start, end = candidate.find("{"), candidate.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("the reply holds no JSON object")
    return json.loads(candidate[start : end + 1])


class StoryWriter:
    def __init__(self, client: openai.AsyncOpenAI, *, model: str, budget: LengthBudget, max_tokens: int = 6000) -> None:
        self.client = client
        self.model = model
        self.budget = budget
        self.max_tokens = max_tokens
        self.structured_output = True  # switched off once a server says it does not support it

    async def outline(self, caption: str, options: StoryOptions) -> StoryOutline:
        """Title, character sheet, and a beat and a scene prompt per page: one structured call."""
        schema_model = outline_model(options.pages, self.budget)
        messages = prompts.outline_messages(caption, options, schema_model.model_json_schema(), self.budget)
        raw = await self._structured(messages, schema_model, "story_outline")
        outline = StoryOutline.model_validate(raw.model_dump())
        return StoryOutline(
            title=clean_text(outline.title) or "Untitled",
            cover_prompt=clean_text(outline.cover_prompt),
            characters=[Character(name=clean_text(c.name), description=clean_text(c.description)) for c in outline.characters],
            pages=[OutlinePage(beat=clean_text(page.beat), scene_prompt=clean_text(page.scene_prompt)) for page in outline.pages],
        )

    async def write_page(self, caption: str, options: StoryOptions, outline: StoryOutline, page_number: int) -> str:
        """One page's text from the outline; pages are written concurrently."""
        schema_model = page_text_model(self.budget)
        messages = prompts.page_messages(caption, options, outline, page_number, schema_model.model_json_schema(), self.budget)
        raw = await self._structured(messages, schema_model, "page_text")
        return clean_text(raw.text) or outline.pages[page_number - 1].beat  # type: ignore[attr-defined]

    async def translate_texts(self, texts: list[str], language: str, names: list[str]) -> list[str]:
        """Translate a few texts (a title, a page) without the rest of the book."""
        schema_model = texts_model(len(texts), max(self.budget.page_text, self.budget.title) * 2)
        messages = prompts.translate_texts_messages(texts, language, names, schema_model.model_json_schema())
        raw = await self._structured(messages, schema_model, "translation")
        return [clean_text(text) for text in raw.texts]  # type: ignore[attr-defined]

    async def translate(self, plan: StoryPlan, language: str) -> Translation:
        schema_model = translation_model(len(plan.pages), self.budget)
        messages = prompts.translate_messages(plan, language, schema_model.model_json_schema())
        raw = await self._structured(messages, schema_model, "translation")
        translation = Translation.model_validate(raw.model_dump())
        return Translation(title=clean_text(translation.title), pages=[clean_text(page) for page in translation.pages])

    async def rewrite_page(self, plan: StoryPlan, page_number: int, instruction: str | None) -> str:
        schema_model = page_text_model(self.budget)
        messages = prompts.rewrite_page_messages(plan, page_number, instruction, schema_model.model_json_schema())
        raw = await self._structured(messages, schema_model, "page_text")
        return clean_text(raw.text)  # type: ignore[attr-defined]

    async def continue_story(self, plan: StoryPlan, more_pages: int) -> list[PlanPage]:
        schema_model = pages_model(more_pages, self.budget)
        messages = prompts.continue_messages(plan, more_pages, schema_model.model_json_schema(), self.budget)
        raw = await self._structured(messages, schema_model, "more_pages")
        return [PlanPage(text=clean_text(page.text), scene_prompt=clean_text(page.scene_prompt)) for page in raw.pages]  # type: ignore[attr-defined]

    async def _structured(self, messages: list[dict], schema_model: type[ModelT], name: str) -> ModelT:
        reply = await self._complete(messages, schema_model.model_json_schema(), name)
        try:
            return _validate(reply, schema_model)
        except ValueError as first_problem:
            logger.warning("LLM reply did not validate; asking once for a repair", extra={"fields": {"step": name, "problem": str(first_problem)[:300]}})
            repair = [*messages, {"role": "assistant", "content": reply}, prompts.repair_message(reply, str(first_problem))]
            second = await self._complete(repair, schema_model.model_json_schema(), name)
            try:
                return _validate(second, schema_model)
            except ValueError as problem:
                raise StoryWriterError(
                    f"The language model did not return a usable {name.replace('_', ' ')} after one repair request ({str(problem)[:200]}). "
                    "Try again, or use a stronger model (FABULA_LLM_MODEL)."
                ) from None

    async def _complete(self, messages: list[dict], schema: dict, name: str) -> str:
        kwargs: dict = {"model": self.model, "messages": messages, "max_tokens": self.max_tokens, "temperature": 0.8}
        if self.structured_output:
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
        try:
            completion = await self.client.chat.completions.create(**kwargs)
        except openai.BadRequestError as exc:
            if self.structured_output and "response_format" in str(exc).lower():
                logger.info("server does not support json_schema; parsing JSON from text instead")
                self.structured_output = False
                return await self._complete(messages, schema, name)
            raise StoryWriterError(f"The language model refused the request: {_openai_message(exc)}") from None
        except openai.AuthenticationError as exc:
            raise UpstreamError(f"The language model server refused the API key (FABULA_LLM_API_KEY): {_openai_message(exc)}") from None
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise UpstreamError(f"The language model server cannot be reached: {exc}", transient=True) from None
        except openai.APIStatusError as exc:
            transient = exc.status_code >= 500 or exc.status_code == 429
            raise UpstreamError(f"The language model server failed: {_openai_message(exc)}", transient=transient) from None
        return completion.choices[0].message.content or ""


def _openai_message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    return str(error.get("message") if isinstance(error, dict) and error.get("message") else exc.message)


def _validate(reply: str, schema_model: type[ModelT]) -> ModelT:
    try:
        data = extract_json(reply)
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"the reply is not JSON: {exc}") from None
    try:
        return schema_model.model_validate(data)
    except ValidationError as exc:
        raise ValueError(str(exc)) from None
